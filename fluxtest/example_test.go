package fluxtest_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/fluxtest"
)

var ErrNotEnoughCoins = errors.New("not enough coins in the piggy bank")

type CoinsAdded struct {
	Amount int64 `json:"amount"`
}

type CoinsTaken struct {
	Amount int64 `json:"amount"`
}

type PiggyBank struct {
	flux.Root
	Balance int64
}

func (a *PiggyBank) Apply(e any) {
	switch e := e.(type) {
	case CoinsAdded:
		a.Balance += e.Amount
	case CoinsTaken:
		a.Balance -= e.Amount
	}
}

func (a *PiggyBank) Take(amount int64) error {
	if amount > a.Balance {
		return ErrNotEnoughCoins
	}
	flux.Raise(a, CoinsTaken{Amount: amount})
	return nil
}

// exampleT stands in for the *testing.T a real test passes to For: it
// prints failures instead of failing a test.
type exampleT struct{ testing.TB }

func (exampleT) Helper()                           {}
func (exampleT) Fatal(args ...any)                 { fmt.Println(args...) }
func (exampleT) Fatalf(format string, args ...any) { fmt.Printf(format+"\n", args...) }
func (exampleT) Errorf(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// In a test, given past events, when a behaviour runs, then it raises
// exactly these events, or fails with this error and raises none.
func ExampleFor() {
	t := exampleT{} // in a test function: its t *testing.T
	reg, err := flux.NewRegistry(flux.AggregateType("PiggyBank", func() *PiggyBank { return new(PiggyBank) },
		flux.EventType[CoinsAdded]("CoinsAdded", 1),
		flux.EventType[CoinsTaken]("CoinsTaken", 1),
	))
	if err != nil {
		fmt.Println(err)
		return
	}

	r := fluxtest.For[*PiggyBank](t, reg).
		Given(CoinsAdded{Amount: 100}).
		When(func(a *PiggyBank) error { return a.Take(30) }).
		Then(CoinsTaken{Amount: 30})
	fmt.Println("raised:", r.Raised())

	r = fluxtest.For[*PiggyBank](t, reg).
		Given(CoinsAdded{Amount: 100}).
		When(func(a *PiggyBank) error { return a.Take(150) }).
		ThenError(ErrNotEnoughCoins)
	fmt.Println("error:", r.Err())
	// Output:
	// raised: [{30}]
	// error: not enough coins in the piggy bank
}
