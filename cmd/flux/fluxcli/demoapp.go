package fluxcli

import (
	"context"

	"github.com/fluxcapacitor/flux/examples/budget"
	"github.com/fluxcapacitor/flux/projection"
)

// balancesProjection is the demo application's projection: envelope
// balances.
const balancesProjection = "envelope-balances"

// demoConfig is the budget example as an application: what an application
// passes to build its own flux. The tests run the commands with it on the
// store the demo fills.
func demoConfig() Config {
	return Config{
		Registry: budget.NewRegistry,
		Projections: []Projection{{Name: balancesProjection, New: func(_ context.Context, b *Backend) (projection.Projection, error) {
			balances, err := b.balanceStore()
			if err != nil {
				return nil, err
			}
			return newBalancesProjection(b.store, balances, b.clock), nil
		}}},
		Commands: map[string]Command{"demo": Demo()},
	}
}
