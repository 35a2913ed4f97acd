// Command budgetflux is the flux command of the budget example
// application: the stock flux commands, which here know the budget's
// event types, aggregates (flux state User ID), personal data and
// projection. An application builds its own the same way:
//
//	go build -o budgetflux ./cmd/flux/examples/budgetflux
//	budgetflux state User 0190f6a0-3c1e-7b8e-9d2f-0123456789ab --dsn flux.db
package main

import (
	"github.com/fluxcapacitor/flux/cmd/flux/fluxcli"
	"github.com/fluxcapacitor/flux/examples/budget"
)

func main() {
	fluxcli.Run(fluxcli.Config{
		Registry:    budget.NewRegistry,
		Projections: []fluxcli.Projection{{Name: "envelope-balances", New: fluxcli.DemoBalances}},
	})
}
