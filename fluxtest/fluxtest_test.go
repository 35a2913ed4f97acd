package fluxtest_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/fluxtest"
)

type Opened struct {
	Owner string `json:"owner"`
}
type Deposited struct {
	Amount int `json:"amount"`
}
type Unregistered struct{}

var ErrClosed = errors.New("account closed")
var ErrAmount = errors.New("amount must be positive")

type Account struct {
	flux.Root
	Owner   string
	Balance int
}

func (a *Account) Apply(e any) {
	switch e := e.(type) {
	case Opened:
		a.Owner = e.Owner
	case Deposited:
		a.Balance += e.Amount
	}
}

func (a *Account) Open(owner string) error {
	if a.Version() > 0 {
		return errors.New("already open")
	}
	flux.Raise(a, Opened{Owner: owner})
	return nil
}

func (a *Account) Deposit(n int) error {
	if a.Version() == 0 {
		return ErrClosed
	}
	if n <= 0 {
		return ErrAmount
	}
	flux.Raise(a, Deposited{Amount: n})
	return nil
}

func registry(t testing.TB) *flux.Registry {
	reg, err := flux.NewRegistry(flux.AggregateType("Account", func() *Account { return new(Account) },
		flux.EventType[Opened]("Opened", 1),
		flux.EventType[Deposited]("Deposited", 1),
	))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestGivenWhenThen(t *testing.T) {
	reg := registry(t)
	fluxtest.For[*Account](t, reg).
		When(func(a *Account) error { return a.Open("ann") }).
		Then(Opened{Owner: "ann"})

	fluxtest.For[*Account](t, reg).
		Given(Opened{Owner: "ann"}, Deposited{Amount: 5}).
		When(func(a *Account) error { return a.Deposit(10) }).
		Then(Deposited{Amount: 10}).
		ThenState(func(t testing.TB, a *Account) {
			if a.Balance != 15 || a.Version() != 3 || a.ID() != fluxtest.DefaultID {
				t.Fatalf("state = %+v v%d", a, a.Version())
			}
		})

	fluxtest.For[*Account](t, reg).WithID("acc-9").
		Given(Opened{Owner: "ann"}).
		When(func(a *Account) error { return a.Deposit(-1) }).
		ThenError(ErrAmount)

	fluxtest.For[*Account](t, reg).
		When(func(a *Account) error { return a.Deposit(1) }).
		ThenError(ErrClosed)
}

// The fixture must fail tests whose expectations are wrong. Each case runs
// in a child process because it is meant to fail.
func TestFixtureFailures(t *testing.T) {
	if c := os.Getenv("FLUXTEST_CASE"); c != "" {
		reg := registry(t)
		f := fluxtest.For[*Account](t, reg).Given(Opened{Owner: "ann"})
		switch c {
		case "wrong event":
			f.When(func(a *Account) error { return a.Deposit(10) }).Then(Deposited{Amount: 11})
		case "missing event":
			f.When(func(a *Account) error { return nil }).Then(Deposited{Amount: 1})
		case "unexpected error":
			f.When(func(a *Account) error { return a.Deposit(-1) }).Then(Deposited{Amount: -1})
		case "wrong error":
			f.When(func(a *Account) error { return a.Deposit(-1) }).ThenError(ErrClosed)
		case "no error":
			f.When(func(a *Account) error { return a.Deposit(1) }).ThenError(ErrAmount)
		case "unregistered given":
			fluxtest.For[*Account](t, reg).Given(Unregistered{}).When(func(a *Account) error { return nil }).Then()
		case "unregistered raised":
			f.When(func(a *Account) error { flux.Raise(a, Unregistered{}); return nil }).Then(Unregistered{})
		}
		return
	}
	for c, want := range map[string]string{
		"wrong event":         "raised events differ",
		"missing event":       "raised events differ",
		"unexpected error":    "behaviour failed",
		"wrong error":         "want one matching",
		"no error":            "behaviour succeeded",
		"unregistered given":  "store the given events",
		"unregistered raised": "save the raised events",
	} {
		t.Run(c, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestFixtureFailures$")
			cmd.Env = append(os.Environ(), "FLUXTEST_CASE="+c)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), want) {
				t.Fatalf("case %q: err = %v, output:\n%s\nwant a failure mentioning %q", c, err, out, want)
			}
		})
	}
}
