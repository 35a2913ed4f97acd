package flux_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
)

// Commands of the tests.
type (
	Increment struct {
		ID string
		N  int
	}
	IncrementTwo  struct{ A, B string }
	CreateCounter struct {
		ID string
	}
	Fail     struct{ ID string }
	OuterCmd struct {
		A, B      string
		FailAfter bool
	}
	ClaimName struct {
		Name, Owner string
	}
	RenameClaim struct {
		From, To, Owner string
	}
	KeyedCreate struct {
		ID, Key string
	}
	Signup struct {
		UserID string `pii:"subject"`
		Email  string `pii:"data"`
		Plan   string
	}
	CountQuery struct{ ID string }

	// Gated commands hold their handler's first attempt at a gate until
	// every contender has loaded, so their saves are sure to overlap.
	GatedIncrement struct {
		ID     string
		ticket *ticket
	}
	GatedKeyedCreate struct {
		ID, Key string
		ticket  *ticket
	}
	GatedClaim struct {
		Name, Owner string
		ticket      *ticket
	}
	// KeyedAdd adds 1 tagged By; meanwhile, when set, runs between its
	// load and its save.
	KeyedAdd struct {
		ID, Key, By string
		meanwhile   func()
	}
)

func (k KeyedCreate) IdempotencyKey() string      { return k.Key }
func (k GatedKeyedCreate) IdempotencyKey() string { return k.Key }
func (k KeyedAdd) IdempotencyKey() string         { return k.Key }

// gate lets n contenders through together: each one's first wait blocks
// until all n have arrived, so the loads of n concurrent handlers all
// happen before any of their saves, whatever the scheduler does.
type gate struct {
	n       int
	mu      sync.Mutex
	arrived int
	open    chan struct{}
}

func newGate(n int) *gate { return &gate{n: n, open: make(chan struct{})} }

// ticket is one contender's pass through a gate.
func (g *gate) ticket() *ticket { return &ticket{g: g} }

type ticket struct {
	g    *gate
	once sync.Once
}

// punch counts the contender as arrived, once; a dispatcher punches its
// ticket when Dispatch returns, so a dispatch that never reached its
// handler cannot hold the others forever.
func (t *ticket) punch() {
	t.once.Do(func() {
		t.g.mu.Lock()
		defer t.g.mu.Unlock()
		if t.g.arrived++; t.g.arrived == t.g.n {
			close(t.g.open)
		}
	})
}

// wait arrives and blocks until every contender has. Later attempts (a
// retry) pass straight through: the gate is open by then.
func (t *ticket) wait() {
	t.punch()
	<-t.g.open
}

// countConflicts counts the concurrency conflicts of the handler it wraps;
// placed after RetryOnConflict, it sees every attempt.
func countConflicts(n *atomic.Int64) flux.Middleware {
	return func(next flux.Handler) flux.Handler {
		return flux.HandlerFunc(func(ctx context.Context, m *flux.Message) (any, error) {
			res, err := next.Handle(ctx, m)
			if errors.Is(err, flux.ErrConcurrencyConflict) {
				n.Add(1)
			}
			return res, err
		})
	}
}

// appendHook is a flux.Observer that calls after with the outcome of every
// store append, in the appending goroutine, before the save returns.
type appendHook struct{ after func(flux.Outcome) }

func (h appendHook) Start(ctx context.Context, op flux.Operation) (context.Context, func(flux.Outcome)) {
	if op.Kind != flux.OpAppend || h.after == nil {
		return ctx, func(flux.Outcome) {}
	}
	return ctx, h.after
}
func (appendHook) Notice(context.Context, flux.Notice)             {}
func (appendHook) TraceMetadata(context.Context) map[string]string { return nil }

var errBoom = errors.New("boom")

type app struct {
	store  *memstore.Store
	repo   *flux.Repository
	bus    *flux.CommandBus
	events *flux.EventBus
	calls  atomic.Int64
}

var names = flux.Unique{Scope: "name", CaseInsensitive: true}

func newApp(t testing.TB, store *memstore.Store, mws ...flux.Middleware) *app {
	t.Helper()
	return newAppWith(t, appOptions{store: store, middleware: mws})
}

type appOptions struct {
	store      *memstore.Store // default: a new one
	observer   flux.Observer
	middleware []flux.Middleware
}

func newAppWith(t testing.TB, o appOptions) *app {
	t.Helper()
	store := o.store
	if store == nil {
		store = memstore.New()
	}
	reg, err := flux.NewRegistry(
		flux.AggregateType("Counter", func() *Counter { return new(Counter) },
			flux.EventType[Added]("Added", 1), flux.EventType[Reset]("Reset", 1),
			flux.Snapshots(flux.SnapshotPolicy{Disabled: true})),
		flux.UniqueClaims(),
	)
	if err != nil {
		t.Fatal(err)
	}
	a := &app{store: store, events: flux.NewEventBus()}
	a.repo, err = flux.NewRepository(flux.Config{Store: store, Registry: reg, Publisher: a.events, Observer: o.observer})
	if err != nil {
		t.Fatal(err)
	}
	a.bus, err = flux.NewCommandBus(flux.CommandBusConfig{Repository: a.repo, Middleware: o.middleware})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(flux.HandleCommand(a.bus, func(ctx context.Context, c CreateCounter) error {
		a.calls.Add(1)
		ctr := new(Counter)
		ctr.SetID(c.ID)
		flux.Raise(ctr, Added{N: 0, Tag: "created"})
		return flux.Track(ctx, ctr)
	}))
	must(flux.HandleCommand(a.bus, func(ctx context.Context, c Increment) error {
		a.calls.Add(1)
		ctr, err := flux.Load[*Counter](ctx, a.repo, c.ID)
		if err != nil {
			return err
		}
		flux.Raise(ctr, Added{N: max(c.N, 1), Tag: "inc"})
		return nil
	}))
	must(flux.HandleCommand(a.bus, func(ctx context.Context, c IncrementTwo) error {
		for _, id := range []string{c.A, c.B} {
			ctr, err := flux.Load[*Counter](ctx, a.repo, id)
			if err != nil {
				return err
			}
			flux.Raise(ctr, Added{N: 1})
		}
		// Loading again returns the tracked instance.
		again, _ := flux.Load[*Counter](ctx, a.repo, c.A)
		if len(again.PendingEvents()) != 1 {
			return errors.New("second load did not return the tracked instance")
		}
		return nil
	}))
	must(flux.HandleCommand(a.bus, func(ctx context.Context, c Fail) error {
		a.calls.Add(1)
		ctr, err := flux.Load[*Counter](ctx, a.repo, c.ID)
		if err != nil {
			return err
		}
		flux.Raise(ctr, Added{N: 100})
		return errBoom
	}))
	must(flux.HandleCommand(a.bus, func(ctx context.Context, c OuterCmd) error {
		ctr, err := flux.Load[*Counter](ctx, a.repo, c.A)
		if err != nil {
			return err
		}
		flux.Raise(ctr, Added{N: 10})
		if err := a.bus.Dispatch(ctx, Increment{ID: c.B}); err != nil { // nested: same unit of work
			return err
		}
		if c.FailAfter {
			return errBoom
		}
		return nil
	}))
	must(flux.HandleCommandResult(a.bus, func(ctx context.Context, c KeyedCreate) (string, error) {
		a.calls.Add(1)
		ctr := new(Counter)
		ctr.SetID(c.ID)
		flux.Raise(ctr, Added{N: 1, Tag: "keyed"})
		return "created " + c.ID, flux.Track(ctx, ctr)
	}))
	must(flux.HandleCommand(a.bus, func(ctx context.Context, c ClaimName) error {
		return names.Claim(ctx, a.repo, c.Name, c.Owner)
	}))
	must(flux.HandleCommand(a.bus, func(ctx context.Context, c RenameClaim) error {
		return names.Transfer(ctx, a.repo, c.From, c.To, c.Owner)
	}))
	must(flux.HandleCommand(a.bus, func(ctx context.Context, c Signup) error { return nil }))
	must(flux.HandleCommand(a.bus, func(ctx context.Context, c GatedIncrement) error {
		a.calls.Add(1)
		ctr, err := flux.Load[*Counter](ctx, a.repo, c.ID)
		c.ticket.wait()
		if err != nil {
			return err
		}
		flux.Raise(ctr, Added{N: 1, Tag: "inc"})
		return nil
	}))
	must(flux.HandleCommandResult(a.bus, func(ctx context.Context, c GatedKeyedCreate) (string, error) {
		a.calls.Add(1)
		ctr := new(Counter)
		ctr.SetID(c.ID)
		flux.Raise(ctr, Added{N: 1, Tag: "keyed"})
		err := flux.Track(ctx, ctr)
		c.ticket.wait()
		return "created " + c.ID, err
	}))
	must(flux.HandleCommand(a.bus, func(ctx context.Context, c GatedClaim) error {
		a.calls.Add(1)
		err := names.Claim(ctx, a.repo, c.Name, c.Owner)
		c.ticket.wait()
		return err
	}))
	must(flux.HandleCommandResult(a.bus, func(ctx context.Context, c KeyedAdd) (string, error) {
		a.calls.Add(1)
		ctr, err := flux.Load[*Counter](ctx, a.repo, c.ID)
		if err != nil {
			return "", err
		}
		if c.meanwhile != nil {
			c.meanwhile()
		}
		flux.Raise(ctr, Added{N: 1, Tag: c.By})
		return "added by " + c.By, nil
	}))
	return a
}

func (a *app) counter(t testing.TB, id string) *Counter {
	t.Helper()
	c, err := flux.Load[*Counter](context.Background(), a.repo, id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (a *app) count(t testing.TB) int {
	t.Helper()
	n := 0
	for _, err := range a.store.ReadAll(context.Background(), flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

func TestRegistrationAndUnknownMessages(t *testing.T) {
	t.Parallel()
	a := newApp(t, nil)
	if err := flux.HandleCommand(a.bus, func(context.Context, Increment) error { return nil }); !errors.Is(err, flux.ErrDuplicateHandler) {
		t.Fatalf("second handler: err = %v", err)
	}
	type Unregistered struct{}
	if err := a.bus.Dispatch(t.Context(), Unregistered{}); !errors.Is(err, flux.ErrUnknownCommand) || !strings.Contains(err.Error(), "Unregistered") {
		t.Fatalf("unknown command: err = %v", err)
	}
	if err := a.bus.Dispatch(t.Context(), nil); !errors.Is(err, flux.ErrUnknownCommand) {
		t.Fatalf("nil command: err = %v", err)
	}
	if _, err := flux.NewCommandBus(flux.CommandBusConfig{}); err == nil {
		t.Fatal("a bus without a repository was created")
	}
}

func TestUnitOfWork(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a := newApp(t, nil)
	for _, id := range []string{"a", "b"} {
		if err := a.bus.Dispatch(ctx, CreateCounter{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("a handler's loads are saved together when it returns nil", func(t *testing.T) {
		if err := a.bus.Dispatch(ctx, IncrementTwo{A: "a", B: "b"}); err != nil {
			t.Fatal(err)
		}
		var recs []flux.Record
		for r, err := range a.store.ReadAll(ctx, flux.ReadAllOptions{After: 2}) {
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
		}
		if len(recs) != 2 || recs[0].Position+1 != recs[1].Position || recs[0].Metadata.CausationID != recs[1].Metadata.CausationID {
			t.Fatalf("one command's events = %+v, want two adjacent events with one causation", recs)
		}
	})
	t.Run("nothing is saved when the handler fails", func(t *testing.T) {
		before := a.count(t)
		if err := a.bus.Dispatch(ctx, Fail{ID: "a"}); !errors.Is(err, errBoom) {
			t.Fatalf("err = %v", err)
		}
		if a.count(t) != before || a.counter(t, "a").Sum != 1 {
			t.Fatal("a failed handler saved events")
		}
	})
	t.Run("a nested dispatch shares the outer unit of work", func(t *testing.T) {
		before := a.count(t)
		if err := a.bus.Dispatch(ctx, OuterCmd{A: "a", B: "b", FailAfter: true}); !errors.Is(err, errBoom) {
			t.Fatalf("err = %v", err)
		}
		if a.count(t) != before {
			t.Fatal("the nested command's events were saved although the outer command failed")
		}
		if err := a.bus.Dispatch(ctx, OuterCmd{A: "a", B: "b"}); err != nil {
			t.Fatal(err)
		}
		if a.count(t) != before+2 || a.counter(t, "a").Sum != 11 || a.counter(t, "b").Sum != 2 {
			t.Fatalf("outer+nested: %d events, a=%d b=%d", a.count(t)-before, a.counter(t, "a").Sum, a.counter(t, "b").Sum)
		}
	})
	t.Run("a stale aggregate makes the whole unit of work fail", func(t *testing.T) {
		before := a.count(t)
		// Another writer changes b while the handler runs.
		var once sync.Once
		bus, err := flux.NewCommandBus(flux.CommandBusConfig{Repository: a.repo})
		if err != nil {
			t.Fatal(err)
		}
		_ = flux.HandleCommand(bus, func(ctx context.Context, c IncrementTwo) error {
			for _, id := range []string{c.A, c.B} {
				ctr, err := flux.Load[*Counter](ctx, a.repo, id)
				if err != nil {
					return err
				}
				flux.Raise(ctr, Added{N: 1})
			}
			once.Do(func() {
				if err := a.bus.Dispatch(context.Background(), Increment{ID: c.B}); err != nil {
					t.Error(err)
				}
			})
			return nil
		})
		err = bus.Dispatch(ctx, IncrementTwo{A: "a", B: "b"})
		if !errors.Is(err, flux.ErrConcurrencyConflict) {
			t.Fatalf("err = %v", err)
		}
		if a.count(t) != before+1 {
			t.Fatalf("%d events saved, want only the concurrent writer's 1", a.count(t)-before)
		}
	})
	t.Run("Track and Save outside a handler", func(t *testing.T) {
		if err := flux.Track(ctx, new(Counter)); !errors.Is(err, flux.ErrNoUnitOfWork) {
			t.Fatalf("Track outside a handler: err = %v", err)
		}
	})
}

func TestCorrelationFlowsFromRequestThroughEventHandlers(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []*flux.Message
	record := func(next flux.Handler) flux.Handler {
		return flux.HandlerFunc(func(ctx context.Context, m *flux.Message) (any, error) {
			mu.Lock()
			seen = append(seen, m)
			mu.Unlock()
			return next.Handle(ctx, m)
		})
	}
	a := newApp(t, nil, record)
	// Creating a counter makes a policy increment a second one.
	flux.OnEvent(a.events, func(ctx context.Context, e Added) error {
		env, _ := flux.EnvelopeFrom(ctx)
		if e.Tag == "created" && env.StreamID == "first" {
			return a.bus.Dispatch(ctx, CreateCounter{ID: "second"})
		}
		return nil
	})
	ctx := flux.WithRequestID(t.Context(), "req-7")
	if err := a.bus.Dispatch(ctx, CreateCounter{ID: "first"}); err != nil {
		t.Fatal(err)
	}
	var recs []flux.Record
	for r, err := range a.store.ReadAll(t.Context(), flux.ReadAllOptions{CorrelationID: "req-7"}) {
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if len(recs) != 2 || len(seen) != 2 {
		t.Fatalf("chain: %d events, %d messages; want 2 and 2", len(recs), len(seen))
	}
	first, second := seen[0], seen[1]
	if first.CorrelationID != "req-7" || first.RequestID != "req-7" || first.CausationID != "" {
		t.Fatalf("first command = %+v", first)
	}
	if recs[0].Metadata.CausationID != first.ID || recs[0].Metadata.RequestID != "req-7" {
		t.Fatalf("first event metadata = %+v, want causation %s", recs[0].Metadata, first.ID)
	}
	if second.CausationID != recs[0].EventID || second.CorrelationID != "req-7" {
		t.Fatalf("second command = %+v, want causation = first event %s and correlation req-7", second, recs[0].EventID)
	}
	if recs[1].Metadata.CausationID != second.ID || recs[1].Metadata.CorrelationID != "req-7" {
		t.Fatalf("second event metadata = %+v", recs[1].Metadata)
	}
	// Without a request, the command's ID is the correlation.
	b := newApp(t, nil, record)
	if err := b.bus.Dispatch(t.Context(), CreateCounter{ID: "x"}); err != nil {
		t.Fatal(err)
	}
	for r, err := range b.store.ReadAll(t.Context(), flux.ReadAllOptions{}) {
		if err != nil || r.Metadata.CorrelationID != r.Metadata.CausationID {
			t.Fatalf("metadata = %+v, %v", r.Metadata, err)
		}
	}
}

// contend dispatches n commands at once, each holding its own ticket of
// one gate, and returns their results and errors by index.
func contend[R any](n int, dispatch func(i int, tk *ticket) (R, error)) ([]R, []error) {
	g := newGate(n)
	res, errs := make([]R, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := g.ticket()
			defer tk.punch()
			res[i], errs[i] = dispatch(i, tk)
		}()
	}
	wg.Wait()
	return res, errs
}

func TestRetryOnConflict32Writers(t *testing.T) {
	t.Parallel()
	var conflicts atomic.Int64
	a := newApp(t, nil,
		flux.RetryOnConflict(flux.RetryOptions{MaxAttempts: 200, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}),
		countConflicts(&conflicts))
	if err := a.bus.Dispatch(t.Context(), CreateCounter{ID: "hot"}); err != nil {
		t.Fatal(err)
	}
	a.calls.Store(0)
	_, errs := contend(32, func(_ int, tk *ticket) (struct{}, error) {
		return struct{}{}, a.bus.Dispatch(context.Background(), GatedIncrement{ID: "hot", ticket: tk})
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	// All 32 loaded version 1 before any saved: one save won, the 31 others
	// conflicted, and every conflicted attempt was run again.
	if n := a.calls.Load(); conflicts.Load() < 31 || n != 32+conflicts.Load() {
		t.Fatalf("%d conflicts, %d handler calls; want at least 31 conflicts and one rerun per conflict", conflicts.Load(), n)
	}
	c := a.counter(t, "hot")
	if c.Sum != 32 || c.Version() != 33 {
		t.Fatalf("after 32 increments: sum %d version %d", c.Sum, c.Version())
	}
}

func TestRetryNeverRetriesOtherErrorsAndGivesUp(t *testing.T) {
	t.Parallel()
	a := newApp(t, nil, flux.RetryOnConflict(flux.RetryOptions{MaxAttempts: 3, BaseDelay: time.Microsecond}))
	if err := a.bus.Dispatch(t.Context(), CreateCounter{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	a.calls.Store(0)
	if err := a.bus.Dispatch(t.Context(), Fail{ID: "c"}); !errors.Is(err, errBoom) || a.calls.Load() != 1 {
		t.Fatalf("plain error: %v after %d calls, want 1 call", err, a.calls.Load())
	}
	// A command that always conflicts (it recreates an existing stream).
	a.calls.Store(0)
	err := a.bus.Dispatch(t.Context(), CreateCounter{ID: "c"})
	if !errors.Is(err, flux.ErrConcurrencyConflict) || a.calls.Load() != 3 || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("always conflicting: %v after %d calls, want 3", err, a.calls.Load())
	}
}

func TestIdempotencyKeys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memstore.New()
	var duplicates atomic.Int64 // appends refused as duplicate commands
	a := newAppWith(t, appOptions{store: store, observer: appendHook{after: func(out flux.Outcome) {
		if errors.Is(out.Err, flux.ErrDuplicateCommand) {
			duplicates.Add(1)
		}
	}}})
	res, err := flux.DispatchResult[string](ctx, a.bus, KeyedCreate{ID: "k1", Key: "create-k1"})
	if err != nil || res != "created k1" {
		t.Fatalf("first = %q, %v", res, err)
	}
	res, err = flux.DispatchResult[string](ctx, a.bus, KeyedCreate{ID: "k1", Key: "create-k1"})
	if err != nil || res != "created k1" || a.calls.Load() != 1 || a.count(t) != 1 {
		t.Fatalf("duplicate = %q, %v after %d calls and %d events", res, err, a.calls.Load(), a.count(t))
	}
	// After a restart: a new bus and repository on the same store.
	b := newApp(t, store)
	res, err = flux.DispatchResult[string](ctx, b.bus, KeyedCreate{ID: "k1", Key: "create-k1"})
	if err != nil || res != "created k1" || b.calls.Load() != 0 {
		t.Fatalf("after restart = %q, %v (%d calls)", res, err, b.calls.Load())
	}
	// Concurrent duplicates: all twelve pass the key lookup and run their
	// handler before any of them saves; the first save records the key,
	// the eleven others are refused by the store (IdempotencyError) and
	// return the first outcome.
	a.calls.Store(0)
	duplicates.Store(0)
	results, errs := contend(12, func(_ int, tk *ticket) (string, error) {
		return flux.DispatchResult[string](context.Background(), a.bus, GatedKeyedCreate{ID: "k2", Key: "create-k2", ticket: tk})
	})
	for i := range results {
		if errs[i] != nil || results[i] != "created k2" {
			t.Fatalf("concurrent duplicate %d = %q, %v", i, results[i], errs[i])
		}
	}
	if a.calls.Load() != 12 || duplicates.Load() != 11 {
		t.Fatalf("%d handler runs and %d refused appends, want 12 overlapping runs and 11 refusals", a.calls.Load(), duplicates.Load())
	}
	if v := a.counter(t, "k2").Version(); v != 1 || a.count(t) != 2 {
		t.Fatalf("k2 at version %d, %d events in all after concurrent duplicates; want 1 and 2", v, a.count(t))
	}
	// A key from the context, on a command without one.
	kctx := flux.WithIdempotencyKey(ctx, "inc-once")
	for i := 0; i < 3; i++ {
		if err := a.bus.Dispatch(kctx, Increment{ID: "k1"}); err != nil {
			t.Fatal(err)
		}
	}
	if c := a.counter(t, "k1"); c.Sum != 2 {
		t.Fatalf("keyed increment applied %d times", c.Sum-1)
	}
	// A failed command records no key: it runs again.
	fctx := flux.WithIdempotencyKey(ctx, "fail-once")
	a.calls.Store(0)
	_ = a.bus.Dispatch(fctx, Fail{ID: "k1"})
	_ = a.bus.Dispatch(fctx, Fail{ID: "k1"})
	if a.calls.Load() != 2 {
		t.Fatalf("failed keyed command ran %d times, want 2", a.calls.Load())
	}
}

// A keyed command whose save conflicts returns the outcome of a duplicate
// that committed meanwhile (the store checked the key before the duplicate
// recorded it), and its own conflict when there is no such duplicate.
func TestIdempotentCommandThatConflicts(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var onConflict func() // run once by the next conflicting append
	a := newAppWith(t, appOptions{observer: appendHook{after: func(out flux.Outcome) {
		if f := onConflict; out.Conflict && f != nil {
			onConflict = nil
			f()
		}
	}}})
	if err := a.bus.Dispatch(ctx, CreateCounter{ID: "raced"}); err != nil {
		t.Fatal(err)
	}
	// Another writer changes the counter between the command's load and save.
	bump := func() {
		if err := a.bus.Dispatch(context.Background(), Increment{ID: "raced"}); err != nil {
			t.Error(err)
		}
	}
	t.Run("without a duplicate the conflict is returned", func(t *testing.T) {
		_, err := flux.DispatchResult[string](ctx, a.bus, KeyedAdd{ID: "raced", Key: "add-1", By: "first", meanwhile: bump})
		if !errors.Is(err, flux.ErrConcurrencyConflict) {
			t.Fatalf("err = %v, want a concurrency conflict", err)
		}
	})
	t.Run("a duplicate that commits after the conflict supplies the outcome", func(t *testing.T) {
		var dupRes string
		var dupErr error
		onConflict = func() {
			dupRes, dupErr = flux.DispatchResult[string](context.Background(), a.bus, KeyedAdd{ID: "raced", Key: "add-2", By: "duplicate"})
		}
		res, err := flux.DispatchResult[string](ctx, a.bus, KeyedAdd{ID: "raced", Key: "add-2", By: "first", meanwhile: bump})
		if onConflict != nil {
			t.Fatal("the command's save did not conflict")
		}
		if dupErr != nil || dupRes != "added by duplicate" {
			t.Fatalf("duplicate = %q, %v", dupRes, dupErr)
		}
		if err != nil || res != "added by duplicate" {
			t.Fatalf("conflicted command = %q, %v; want the duplicate's outcome", res, err)
		}
		a.calls.Store(0)
		if res, err := flux.DispatchResult[string](ctx, a.bus, KeyedAdd{ID: "raced", Key: "add-2", By: "third"}); err != nil || res != "added by duplicate" || a.calls.Load() != 0 {
			t.Fatalf("later duplicate = %q, %v after %d handler runs", res, err, a.calls.Load())
		}
	})
	c := a.counter(t, "raced")
	if c.ByTag["first"] != 0 || c.ByTag["duplicate"] != 1 || c.ByTag["third"] != 0 || c.Sum != 3 {
		t.Fatalf("counter by tag = %v (sum %d); want only the two bumps and the duplicate", c.ByTag, c.Sum)
	}
}

func TestQueryBus(t *testing.T) {
	t.Parallel()
	a := newApp(t, nil)
	if err := a.bus.Dispatch(t.Context(), CreateCounter{ID: "q"}); err != nil {
		t.Fatal(err)
	}
	var seen atomic.Int64
	qb := flux.NewQueryBus(flux.QueryBusConfig{Middleware: []flux.Middleware{func(next flux.Handler) flux.Handler {
		return flux.HandlerFunc(func(ctx context.Context, m *flux.Message) (any, error) {
			seen.Add(1)
			return next.Handle(ctx, m)
		})
	}}})
	if err := flux.HandleQuery(qb, func(ctx context.Context, q CountQuery) (int, error) {
		c, err := flux.Load[*Counter](ctx, a.repo, q.ID)
		if err != nil {
			return 0, err
		}
		return int(c.Version()), nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := flux.HandleQuery(qb, func(context.Context, CountQuery) (int, error) { return 0, nil }); !errors.Is(err, flux.ErrDuplicateHandler) {
		t.Fatalf("duplicate query handler: %v", err)
	}
	if n, err := flux.Ask[int](t.Context(), qb, CountQuery{ID: "q"}); err != nil || n != 1 || seen.Load() != 1 {
		t.Fatalf("Ask = %d, %v (middleware ran %d times)", n, err, seen.Load())
	}
	if _, err := flux.Ask[string](t.Context(), qb, CountQuery{ID: "q"}); !errors.Is(err, flux.ErrResultType) {
		t.Fatalf("wrong result type: %v", err)
	}
	if _, err := flux.Ask[int](t.Context(), qb, struct{}{}); !errors.Is(err, flux.ErrUnknownQuery) {
		t.Fatalf("unknown query: %v", err)
	}
	if _, err := flux.Ask[int](t.Context(), qb, CountQuery{ID: "missing"}); !errors.Is(err, flux.ErrAggregateNotFound) {
		t.Fatalf("handler error: %v", err)
	}
}

func TestEventBus(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a := newApp(t, nil)
	var order []string
	flux.OnEvent(a.events, func(ctx context.Context, e Added) error {
		env, _ := flux.EnvelopeFrom(ctx)
		order = append(order, fmt.Sprintf("typed %s@%d", env.StreamID, env.Position))
		return nil
	})
	a.events.OnAnyEvent(func(ctx context.Context, e flux.Envelope) error {
		order = append(order, fmt.Sprintf("any %s@%d", e.StreamID, e.Position))
		return nil
	})
	if err := a.bus.Dispatch(ctx, CreateCounter{ID: "e1"}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(order, ",") != "typed e1@1,any e1@1" {
		t.Fatalf("handler calls = %v", order)
	}
	// Never for a rolled-back save.
	order = nil
	if err := a.bus.Dispatch(ctx, CreateCounter{ID: "e1"}); !errors.Is(err, flux.ErrConcurrencyConflict) || len(order) != 0 {
		t.Fatalf("conflicting save: %v, handlers %v", err, order)
	}
	// A failing (or panicking) handler is reported; the events are stored.
	flux.OnEvent(a.events, func(ctx context.Context, e Added) error {
		if e.Tag == "inc" {
			return errors.New("projection down")
		}
		return nil
	})
	flux.OnEvent(a.events, func(ctx context.Context, e Added) error {
		if e.N == 7 {
			panic("broken handler")
		}
		return nil
	})
	err := a.bus.Dispatch(ctx, Increment{ID: "e1", N: 7})
	var pe *flux.PublishError
	if !errors.Is(err, flux.ErrPublish) || !errors.As(err, &pe) || len(pe.Failures) != 2 || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("failing handlers: err = %v", err)
	}
	if a.counter(t, "e1").Sum != 7 {
		t.Fatal("events of a command whose event handler failed were not stored")
	}
}

func TestUniqueValues(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var conflicts atomic.Int64
	a := newApp(t, nil, flux.RetryOnConflict(flux.RetryOptions{MaxAttempts: 10, BaseDelay: time.Millisecond}), countConflicts(&conflicts))
	if err := a.bus.Dispatch(ctx, ClaimName{Name: "Savings", Owner: "env-1"}); err != nil {
		t.Fatal(err)
	}
	if err := a.bus.Dispatch(ctx, ClaimName{Name: "savings", Owner: "env-1"}); err != nil {
		t.Fatalf("re-claim by the owner: %v", err)
	}
	err := a.bus.Dispatch(ctx, ClaimName{Name: "SAVINGS", Owner: "env-2"})
	var vt *flux.ValueTakenError
	if !errors.Is(err, flux.ErrValueTaken) || !errors.As(err, &vt) || vt.Owner != "env-1" || strings.Contains(strings.ToLower(err.Error()), "savings") {
		t.Fatalf("claim of a taken value (case-insensitive): err = %v", err)
	}
	// A rename moves the claim atomically.
	if err := a.bus.Dispatch(ctx, RenameClaim{From: "Savings", To: "Holidays", Owner: "env-1"}); err != nil {
		t.Fatal(err)
	}
	if owner, _ := names.Owner(ctx, a.repo, "savings"); owner != "" {
		t.Fatalf("old name still held by %q", owner)
	}
	if owner, _ := names.Owner(ctx, a.repo, "holidays"); owner != "env-1" {
		t.Fatalf("new name held by %q", owner)
	}
	if err := a.bus.Dispatch(ctx, ClaimName{Name: "Savings", Owner: "env-2"}); err != nil {
		t.Fatalf("claim of a released value: %v", err)
	}
	// A rename onto a taken name changes nothing.
	before := a.count(t)
	if err := a.bus.Dispatch(ctx, RenameClaim{From: "Holidays", To: "Savings", Owner: "env-1"}); !errors.Is(err, flux.ErrValueTaken) || a.count(t) != before {
		t.Fatalf("rename onto a taken name: %v, %d new events", err, a.count(t)-before)
	}
	// Concurrent claims of one value, all loaded before any saves: one
	// save wins; every other claim conflicts once, is retried, and then
	// finds the value taken by the winner.
	for _, n := range []int{2, 10} {
		t.Run(fmt.Sprintf("of %d concurrent claims exactly one succeeds", n), func(t *testing.T) {
			value := fmt.Sprint("Contested-", n)
			owner := func(i int) string { return fmt.Sprint("env-", 100+i) }
			conflicts.Store(0)
			_, errs := contend(n, func(i int, tk *ticket) (struct{}, error) {
				return struct{}{}, a.bus.Dispatch(context.Background(), GatedClaim{Name: value, Owner: owner(i), ticket: tk})
			})
			winner := ""
			var taken []*flux.ValueTakenError
			for i, err := range errs {
				var vt *flux.ValueTakenError
				switch {
				case err == nil && winner == "":
					winner = owner(i)
				case err == nil:
					t.Fatalf("both %s and %s claimed the value", winner, owner(i))
				case errors.As(err, &vt) && errors.Is(err, flux.ErrValueTaken):
					taken = append(taken, vt)
				default:
					t.Fatalf("claim by %s: %v", owner(i), err)
				}
			}
			if winner == "" || len(taken) != n-1 || conflicts.Load() != int64(n-1) {
				t.Fatalf("winner %q, %d refused, %d conflicts; want one winner, %d refused after one conflict each", winner, len(taken), conflicts.Load(), n-1)
			}
			for _, vt := range taken {
				if vt.Owner != winner {
					t.Fatalf("refused claim names owner %q, want the winner %q", vt.Owner, winner)
				}
			}
			if got, err := names.Owner(ctx, a.repo, value); err != nil || got != winner {
				t.Fatalf("value held by %q (%v), want %q", got, err, winner)
			}
		})
	}
	if err := names.Claim(ctx, a.repo, "x", "y"); !errors.Is(err, flux.ErrNoUnitOfWork) {
		t.Fatalf("claim outside a handler: %v", err)
	}
	if s1, s2 := names.StreamID("A"), (flux.Unique{Scope: "name", CaseInsensitive: true, Key: []byte("k")}).StreamID("A"); s1 == s2 || strings.Contains(s1, "a") && strings.Contains(s1, "name") {
		t.Fatalf("stream IDs %q %q", s1, s2)
	}
}

func TestLoggingRedactsPersonalData(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	a := newApp(t, nil, flux.Logging(logger))
	ctx := flux.WithRequestID(t.Context(), "req-log")
	if err := a.bus.Dispatch(ctx, Signup{UserID: "u1", Email: "secret-canary@example.com", Plan: "gold"}); err != nil {
		t.Fatal(err)
	}
	if err := a.bus.Dispatch(ctx, Fail{ID: "missing"}); err == nil {
		t.Fatal("want an error")
	}
	out := buf.String()
	for _, want := range []string{`"type":"flux_test.Signup"`, `"Email":"[personal data]"`, `"Plan":"gold"`, `"UserID":"u1"`,
		`"request_id":"req-log"`, `"correlation_id":"req-log"`, `"outcome":"ok"`, `"outcome":"error"`, `"message_id":"`, `"duration":`} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret-canary") {
		t.Fatalf("log contains personal data:\n%s", out)
	}
}
