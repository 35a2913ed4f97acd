package flux_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
)

type WalletOpened struct {
	Owner string `json:"owner"`
}

type MoneyDeposited struct {
	Amount int64 `json:"amount"`
}

type Wallet struct {
	flux.Root
	Balance int64
}

func (w *Wallet) Apply(e any) {
	if d, ok := e.(MoneyDeposited); ok {
		w.Balance += d.Amount
	}
}

type OpenWallet struct{ WalletID, Owner string }

type Deposit struct {
	WalletID string
	Amount   int64
}

// A command bus gives each command a unit of work: what the handler loads
// or tracks is saved atomically when it returns nil, nothing when it
// returns an error.
func ExampleNewCommandBus() {
	ctx := context.Background()
	reg, err := flux.NewRegistry(flux.AggregateType("Wallet", func() *Wallet { return new(Wallet) },
		flux.EventType[WalletOpened]("WalletOpened", 1),
		flux.EventType[MoneyDeposited]("MoneyDeposited", 1),
	))
	if err != nil {
		fmt.Println(err)
		return
	}
	repo, err := flux.NewRepository(flux.Config{Store: memstore.New(), Registry: reg})
	if err != nil {
		fmt.Println(err)
		return
	}
	bus, err := flux.NewCommandBus(flux.CommandBusConfig{
		Repository: repo,
		Middleware: []flux.Middleware{flux.RetryOnConflict(flux.RetryOptions{})},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	_ = flux.HandleCommand(bus, func(ctx context.Context, c OpenWallet) error {
		w := new(Wallet)
		w.SetID(c.WalletID)
		flux.Raise(w, WalletOpened{Owner: c.Owner})
		return flux.Track(ctx, w) // saved when the handler returns nil
	})
	_ = flux.HandleCommandResult(bus, func(ctx context.Context, c Deposit) (int64, error) {
		w, err := flux.Load[*Wallet](ctx, repo, c.WalletID) // tracked by the unit of work
		if err != nil {
			return 0, err
		}
		if c.Amount <= 0 {
			return 0, fmt.Errorf("deposit %d: the amount must be positive", c.Amount)
		}
		flux.Raise(w, MoneyDeposited{Amount: c.Amount})
		return w.Balance, nil
	})

	fmt.Println(bus.Dispatch(ctx, OpenWallet{WalletID: "wallet-1", Owner: "ada"}))
	balance, err := flux.DispatchResult[int64](ctx, bus, Deposit{WalletID: "wallet-1", Amount: 30})
	fmt.Println(balance, err)
	_, err = flux.DispatchResult[int64](ctx, bus, Deposit{WalletID: "wallet-1", Amount: -5})
	fmt.Println(err)
	err = bus.Dispatch(ctx, "not a command type")
	fmt.Println(errors.Is(err, flux.ErrUnknownCommand))

	w, _ := flux.Load[*Wallet](ctx, repo, "wallet-1")
	fmt.Printf("balance %d at version %d\n", w.Balance, w.Version())
	// Output:
	// <nil>
	// 30 <nil>
	// deposit -5: the amount must be positive
	// true
	// balance 30 at version 2
}
