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
		Registry:    budget.NewRegistry,
		Projections: []Projection{{Name: balancesProjection, New: DemoBalances}},
		Commands:    map[string]Command{"demo": Demo()},
	}
}

// DemoBalances builds the budget example's envelope-balances projection
// over a table of the store's database (budget_envelope_balances, created
// if needed), which `flux projections rebuild envelope-balances --swap`
// rebuilds into a fresh table and swaps in. It is what an application's
// Projection.New does for its own read models.
func DemoBalances(_ context.Context, b *Backend) (projection.Projection, error) {
	balances, err := b.balanceStore()
	if err != nil {
		return nil, err
	}
	return newBalancesProjection(b.store, balances, b.clock), nil
}
