package budget_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/examples/budget"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

const secret = "budget-test-secret-0123456789abcd"

func newApp(t *testing.T) (*budget.App, *memstore.Store) {
	t.Helper()
	store := memstore.New()
	return newAppOn(t, store), store
}

func newAppOn(t *testing.T, store flux.EventStore) *budget.App {
	t.Helper()
	app, err := budget.NewApp(budget.Config{Store: store, Secret: []byte(secret),
		Retry: flux.RetryOptions{MaxAttempts: 50}})
	if err != nil {
		t.Fatal(err)
	}
	return app
}

// gatedStore holds the append of every dispatch whose context carries a
// ticket until all the ticket holders have reached their append (or
// returned): their handlers have all loaded by then, so their saves
// really race. It counts appends refused as concurrency conflicts.
type gatedStore struct {
	*memstore.Store
	conflicts atomic.Int64
}

type ticketKey struct{}

func (s *gatedStore) Append(ctx context.Context, req flux.AppendRequest) (flux.AppendResult, error) {
	if tk, ok := ctx.Value(ticketKey{}).(*ticket); ok {
		tk.wait()
	}
	res, err := s.Store.Append(ctx, req)
	if errors.Is(err, flux.ErrConcurrencyConflict) {
		s.conflicts.Add(1)
	}
	return res, err
}

// gate lets n contenders through together; ticket is one contender's pass.
type gate struct {
	n       int
	mu      sync.Mutex
	arrived int
	open    chan struct{}
}

type ticket struct {
	g    *gate
	once sync.Once
}

// punch counts the contender once; a dispatcher punches when Dispatch
// returns, so one that never reached its append cannot block the others.
func (t *ticket) punch() {
	t.once.Do(func() {
		t.g.mu.Lock()
		defer t.g.mu.Unlock()
		if t.g.arrived++; t.g.arrived == t.g.n {
			close(t.g.open)
		}
	})
}

// wait blocks the first time until every contender has arrived; retries
// pass straight through.
func (t *ticket) wait() {
	t.punch()
	<-t.g.open
}

func do(t *testing.T, app *budget.App, cmds ...any) {
	t.Helper()
	for _, c := range cmds {
		if err := app.Commands.Dispatch(context.Background(), c); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
}

func envelope(t *testing.T, app *budget.App, id string) budget.EnvelopeView {
	t.Helper()
	v, err := flux.Ask[budget.EnvelopeView](context.Background(), app.Queries, budget.GetEnvelope{EnvelopeID: id})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func signUp(id, email string) budget.SignUp {
	return budget.SignUp{UserID: id, Email: email, Firstname: "Ada", Lastname: "Byron", Language: "en", Consent: true}
}

func TestSignUpKeepsEmailsUnique(t *testing.T) {
	t.Parallel()
	app, store := newApp(t)
	do(t, app, signUp("u1", "ada@example.com"))
	err := app.Commands.Dispatch(t.Context(), signUp("u2", "ADA@example.com"))
	if !errors.Is(err, budget.ErrEmailAlreadyInUse) {
		t.Fatalf("duplicate e-mail (other case): %v", err)
	}
	if _, err := flux.Ask[budget.UserView](t.Context(), app.Queries, budget.GetUser{UserID: "u2"}); !errors.Is(err, flux.ErrAggregateNotFound) {
		t.Fatalf("the refused user exists: %v", err)
	}
	u, err := flux.Ask[budget.UserView](t.Context(), app.Queries, budget.GetUser{UserID: "u1"})
	if err != nil || u.Email != "ada@example.com" || u.Firstname != "Ada" {
		t.Fatalf("user = %+v, %v", u, err)
	}
	// The e-mail is stored neither in the user's events nor in the registry.
	for r, err := range store.ReadAll(t.Context(), flux.ReadAllOptions{}) {
		if err != nil || bytes.Contains(r.Payload, []byte("ada@")) || bytes.Contains([]byte(r.StreamID), []byte("ada")) {
			t.Fatalf("personal data in clear: %s %s (%v)", r.StreamID, r.Payload, err)
		}
	}
	// Deleting the user frees the address.
	do(t, app, budget.DeleteUser{UserID: "u1"}, signUp("u3", "ada@example.com"))
}

func TestEnvelopeNamesAreUniquePerUser(t *testing.T) {
	t.Parallel()
	app, _ := newApp(t)
	do(t, app, signUp("u1", "a@example.com"), signUp("u2", "b@example.com"),
		budget.AddBudgetEnvelope{EnvelopeID: "e1", UserID: "u1", Name: "Holidays", TargetedAmount: 100_00, Currency: "EUR"},
		budget.AddBudgetEnvelope{EnvelopeID: "e9", UserID: "u2", Name: "Holidays", TargetedAmount: 50_00, Currency: "EUR"})
	err := app.Commands.Dispatch(t.Context(), budget.AddBudgetEnvelope{EnvelopeID: "e2", UserID: "u1", Name: "holidays", TargetedAmount: 1, Currency: "EUR"})
	if !errors.Is(err, budget.ErrEnvelopeNameInUse) {
		t.Fatalf("second 'holidays' for u1: %v", err)
	}
	// Rename releases the old name and claims the new one atomically.
	do(t, app, budget.RenameBudgetEnvelope{EnvelopeID: "e1", UserID: "u1", Name: "Summer"},
		budget.AddBudgetEnvelope{EnvelopeID: "e2", UserID: "u1", Name: "Holidays", TargetedAmount: 1, Currency: "EUR"})
	err = app.Commands.Dispatch(t.Context(), budget.RenameBudgetEnvelope{EnvelopeID: "e1", UserID: "u1", Name: "HOLIDAYS"})
	if !errors.Is(err, budget.ErrEnvelopeNameInUse) {
		t.Fatalf("rename onto a taken name: %v", err)
	}
	if v := envelope(t, app, "e1"); v.Name != "Summer" {
		t.Fatalf("e1 renamed to %q after a refused rename", v.Name)
	}
	if err := app.Commands.Dispatch(t.Context(), budget.RenameBudgetEnvelope{EnvelopeID: "e1", UserID: "u2", Name: "Mine"}); !errors.Is(err, budget.ErrNotYourEnvelope) {
		t.Fatalf("rename of another user's envelope: %v", err)
	}
}

func TestCreditDebitAndTransfer(t *testing.T) {
	t.Parallel()
	app, _ := newApp(t)
	do(t, app, signUp("u1", "a@example.com"), signUp("u2", "b@example.com"),
		budget.AddBudgetEnvelope{EnvelopeID: "food", UserID: "u1", Name: "Food", TargetedAmount: 300_00, Currency: "EUR"},
		budget.AddBudgetEnvelope{EnvelopeID: "rent", UserID: "u1", Name: "Rent", TargetedAmount: 900_00, Currency: "EUR"},
		budget.AddBudgetEnvelope{EnvelopeID: "usd", UserID: "u1", Name: "Trip", TargetedAmount: 500_00, Currency: "USD"},
		budget.AddBudgetEnvelope{EnvelopeID: "other", UserID: "u2", Name: "Food", TargetedAmount: 300_00, Currency: "EUR"},
		budget.CreditBudgetEnvelope{EnvelopeID: "food", UserID: "u1", Amount: 250_00},
		budget.DebitBudgetEnvelope{EnvelopeID: "food", UserID: "u1", Amount: 20_00},
		budget.TransferBetweenEnvelopes{TransferID: "t1", FromEnvelopeID: "food", ToEnvelopeID: "rent", UserID: "u1", Amount: 100_00})
	if f, r := envelope(t, app, "food"), envelope(t, app, "rent"); f.CurrentAmount != 130_00 || r.CurrentAmount != 100_00 {
		t.Fatalf("after transfer: food %d rent %d", f.CurrentAmount, r.CurrentAmount)
	}
	cases := []struct {
		name string
		cmd  any
		want error
	}{
		{"debit beyond the balance", budget.DebitBudgetEnvelope{EnvelopeID: "food", UserID: "u1", Amount: 131_00}, budget.ErrInsufficientFunds},
		{"credit beyond the target", budget.CreditBudgetEnvelope{EnvelopeID: "food", UserID: "u1", Amount: 171_00}, budget.ErrTargetExceeded},
		{"negative amount", budget.CreditBudgetEnvelope{EnvelopeID: "food", UserID: "u1", Amount: -1}, budget.ErrAmountNotPositive},
		{"transfer beyond the balance", budget.TransferBetweenEnvelopes{FromEnvelopeID: "food", ToEnvelopeID: "rent", UserID: "u1", Amount: 500_00}, budget.ErrInsufficientFunds},
		{"transfer beyond the target", budget.TransferBetweenEnvelopes{FromEnvelopeID: "rent", ToEnvelopeID: "food", UserID: "u1", Amount: 100_00 - 1 + 171_00}, budget.ErrInsufficientFunds},
		{"transfer to another user's envelope", budget.TransferBetweenEnvelopes{FromEnvelopeID: "food", ToEnvelopeID: "other", UserID: "u1", Amount: 1}, budget.ErrNotYourEnvelope},
		{"transfer across currencies", budget.TransferBetweenEnvelopes{FromEnvelopeID: "food", ToEnvelopeID: "usd", UserID: "u1", Amount: 1}, budget.ErrCurrencyMismatch},
		{"transfer to the same envelope", budget.TransferBetweenEnvelopes{FromEnvelopeID: "food", ToEnvelopeID: "food", UserID: "u1", Amount: 1}, budget.ErrSameEnvelope},
		{"unknown envelope", budget.CreditBudgetEnvelope{EnvelopeID: "nope", UserID: "u1", Amount: 1}, budget.ErrEnvelopeNotCreated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := app.Commands.Dispatch(t.Context(), c.cmd); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if f, r := envelope(t, app, "food"), envelope(t, app, "rent"); f.CurrentAmount != 130_00 || r.CurrentAmount != 100_00 {
				t.Fatalf("a refused command changed balances: food %d rent %d", f.CurrentAmount, r.CurrentAmount)
			}
		})
	}
}

func TestConcurrentTransfersNeverLoseMoney(t *testing.T) {
	t.Parallel()
	store := &gatedStore{Store: memstore.New()}
	app := newAppOn(t, store)
	do(t, app, signUp("u1", "a@example.com"),
		budget.AddBudgetEnvelope{EnvelopeID: "a", UserID: "u1", Name: "A", TargetedAmount: 100, Currency: "EUR"},
		budget.AddBudgetEnvelope{EnvelopeID: "b", UserID: "u1", Name: "B", TargetedAmount: 100, Currency: "EUR"},
		budget.CreditBudgetEnvelope{EnvelopeID: "a", UserID: "u1", Amount: 20})
	g := &gate{n: 25, open: make(chan struct{})}
	var wg sync.WaitGroup
	errs := make([]error, g.n)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := &ticket{g: g}
			defer tk.punch()
			errs[i] = app.Commands.Dispatch(context.WithValue(context.Background(), ticketKey{}, tk), budget.TransferBetweenEnvelopes{
				TransferID: fmt.Sprint("t", i), FromEnvelopeID: "a", ToEnvelopeID: "b", UserID: "u1", Amount: 1})
		}()
	}
	wg.Wait()
	ok, broke := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, budget.ErrInsufficientFunds):
			broke++
		default:
			t.Fatalf("transfer: %v", err)
		}
	}
	// All 25 saw 20 in a before any saved: 24 lost the first race and were
	// retried on a fresh load; the last 5 found the money gone.
	if n := store.conflicts.Load(); n < 24 {
		t.Fatalf("%d conflicts; want at least 24 (every transfer but one retried)", n)
	}
	a, b := envelope(t, app, "a"), envelope(t, app, "b")
	if ok != 20 || broke != 5 || a.CurrentAmount != 0 || b.CurrentAmount != 20 {
		t.Fatalf("%d transfers ok, %d refused; a=%d b=%d", ok, broke, a.CurrentAmount, b.CurrentAmount)
	}
}

func TestBalancesProjectionFollowsTheLog(t *testing.T) {
	t.Parallel()
	app, _ := newApp(t)
	balances := budget.NewMemoryBalances()
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: app.Repo, PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(budget.BalancesProjection("balances", balances)); err != nil {
		t.Fatal(err)
	}
	do(t, app, signUp("u1", "a@example.com"),
		budget.AddBudgetEnvelope{EnvelopeID: "e1", UserID: "u1", Name: "Food", TargetedAmount: 100, Currency: "EUR"},
		budget.AddBudgetEnvelope{EnvelopeID: "e2", UserID: "u1", Name: "Rent", TargetedAmount: 100, Currency: "EUR"},
		budget.CreditBudgetEnvelope{EnvelopeID: "e1", UserID: "u1", Amount: 60},
		budget.TransferBetweenEnvelopes{FromEnvelopeID: "e1", ToEnvelopeID: "e2", UserID: "u1", Amount: 25},
		budget.RenameBudgetEnvelope{EnvelopeID: "e2", UserID: "u1", Name: "Home"})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		views, _ := balances.List(t.Context(), "u1")
		if len(views) == 2 && views[0].Name == "Food" && views[0].CurrentAmount == 35 && views[1].Name == "Home" && views[1].CurrentAmount == 25 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("read model = %+v", views)
		}
		time.Sleep(time.Millisecond)
	}
	// A rebuild from scratch gives the same model.
	cancel()
	if err := r.Rebuild(t.Context(), "balances", projection.ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	views, _ := balances.List(t.Context(), "u1")
	if len(views) != 2 || views[0].CurrentAmount != 35 || views[1].CurrentAmount != 25 {
		t.Fatalf("rebuilt read model = %+v", views)
	}
}

func TestPHPEraCreditsAreUpcast(t *testing.T) {
	t.Parallel()
	app, store := newApp(t)
	do(t, app, signUp("u1", "a@example.com"),
		budget.AddBudgetEnvelope{EnvelopeID: "e1", UserID: "u1", Name: "Food", TargetedAmount: 100_00, Currency: "EUR"})
	_, err := store.Append(t.Context(), flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: "e1", AggregateType: "BudgetEnvelope", Expected: 1,
		Events: []flux.EventData{{EventID: "0190f6a0-3c1e-7b8e-9d2f-0123456789ab", EventName: "BudgetEnvelopeCredited", EventVersion: 1,
			Payload: []byte(`{"creditedAmount":"12.5"}`), OccurredAt: time.Now()}}}}})
	if err != nil {
		t.Fatal(err)
	}
	do(t, app, budget.CreditBudgetEnvelope{EnvelopeID: "e1", UserID: "u1", Amount: 1})
	if v := envelope(t, app, "e1"); v.CurrentAmount != 12_51 {
		t.Fatalf("balance = %d, want 1251", v.CurrentAmount)
	}
}

func TestDirectoryForgetsItsRows(t *testing.T) {
	t.Parallel()
	app, _ := newApp(t)
	dir := budget.NewMemoryDirectory()
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: app.Repo, PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(budget.DirectoryProjection("directory", dir)); err != nil {
		t.Fatal(err)
	}
	do(t, app, signUp("u1", "ada@canary.example"), signUp("u2", "bob@example.com"))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	waitFor := func(what string, ok func([]budget.DirectoryEntry) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for rows := dir.List(); !ok(rows); rows = dir.List() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: directory = %+v", what, rows)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("both users", func(rows []budget.DirectoryEntry) bool {
		return len(rows) == 2 && rows[0].Email == "ada@canary.example"
	})
	if _, err := app.Protector.Forget(t.Context(), "u1", pii.ForgetOptions{By: "test"}); err != nil {
		t.Fatal(err)
	}
	waitFor("u1 erased", func(rows []budget.DirectoryEntry) bool { return len(rows) == 1 && rows[0].UserID == "u2" })
	// A rebuild from scratch does not bring the forgotten user back.
	cancel()
	if err := r.Rebuild(t.Context(), "directory", projection.ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	if rows := dir.List(); len(rows) != 1 || rows[0].UserID != "u2" {
		t.Fatalf("rebuilt directory = %+v", rows)
	}
}
