package sqlitestore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
)

// The command bus's contention paths on SQLite: concurrent handlers are
// held at a gate until all have loaded, so their saves really race.

// Tally is the contended aggregate.
type Tally struct {
	flux.Root
	Sum   int
	ByTag map[string]int
}

// Tallied adds N to a tally.
type Tallied struct {
	N   int    `json:"n"`
	Tag string `json:"tag"`
}

func (a *Tally) Apply(e any) {
	if e, ok := e.(Tallied); ok {
		a.Sum += e.N
		if a.ByTag == nil {
			a.ByTag = map[string]int{}
		}
		a.ByTag[e.Tag] += e.N
	}
}

type (
	// openTally creates a tally.
	openTally struct{ ID string }
	// gatedTally loads a tally, waits at its gate, then adds 1.
	gatedTally struct {
		ID     string
		ticket *ticket
	}
	// gatedKeyedTally creates a tally under an idempotency key, waiting
	// at its gate before the save.
	gatedKeyedTally struct {
		ID, Key string
		ticket  *ticket
	}
	// gatedClaim claims a unique name, waiting at its gate before the save.
	gatedClaim struct {
		Name, Owner string
		ticket      *ticket
	}
	// keyedTally adds 1 tagged By under an idempotency key; meanwhile,
	// when set, runs between the load and the save.
	keyedTally struct {
		ID, Key, By string
		meanwhile   func()
	}
)

func (c gatedKeyedTally) IdempotencyKey() string { return c.Key }
func (c keyedTally) IdempotencyKey() string      { return c.Key }

// gate lets n contenders through together: each one's first wait blocks
// until all n have arrived; later waits (retries) pass straight through.
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

// punch counts the contender once; dispatchers punch when Dispatch
// returns, so one that never reached its handler cannot block the others.
func (t *ticket) punch() {
	t.once.Do(func() {
		t.g.mu.Lock()
		defer t.g.mu.Unlock()
		if t.g.arrived++; t.g.arrived == t.g.n {
			close(t.g.open)
		}
	})
}

func (t *ticket) wait() {
	t.punch()
	<-t.g.open
}

// contend dispatches n commands at once, each with its own ticket of one
// gate, and returns their results and errors by index.
func contend[R any](n int, dispatch func(i int, tk *ticket) (R, error)) ([]R, []error) {
	g := &gate{n: n, open: make(chan struct{})}
	res, errs := make([]R, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := &ticket{g: g}
			defer tk.punch()
			res[i], errs[i] = dispatch(i, tk)
		}()
	}
	wg.Wait()
	return res, errs
}

// outcomes is a flux.Observer that counts store appends refused as
// conflicts or duplicate commands, and runs onConflict (once) when an
// append conflicts.
type outcomes struct {
	conflicts, duplicates atomic.Int64
	onConflict            func()
}

func (o *outcomes) Start(ctx context.Context, op flux.Operation) (context.Context, func(flux.Outcome)) {
	if op.Kind != flux.OpAppend {
		return ctx, func(flux.Outcome) {}
	}
	return ctx, func(out flux.Outcome) {
		switch {
		case out.Conflict:
			o.conflicts.Add(1)
			if f := o.onConflict; f != nil {
				o.onConflict = nil
				f()
			}
		case errors.Is(out.Err, flux.ErrDuplicateCommand):
			o.duplicates.Add(1)
		}
	}
}
func (*outcomes) Notice(context.Context, flux.Notice)             {}
func (*outcomes) TraceMetadata(context.Context) map[string]string { return nil }

type tallyApp struct {
	repo  *flux.Repository
	bus   *flux.CommandBus
	obs   *outcomes
	calls atomic.Int64 // handler runs
}

var tallyNames = flux.Unique{Scope: "tally-name", CaseInsensitive: true}

func newTallyApp(t *testing.T) *tallyApp {
	t.Helper()
	reg, err := flux.NewRegistry(
		flux.AggregateType("Tally", func() *Tally { return new(Tally) }, flux.EventType[Tallied]("Tallied", 1)),
		flux.UniqueClaims(),
	)
	if err != nil {
		t.Fatal(err)
	}
	a := &tallyApp{obs: new(outcomes)}
	a.repo, err = flux.NewRepository(flux.Config{Store: openTemp(t, nil), Registry: reg, Observer: a.obs})
	if err != nil {
		t.Fatal(err)
	}
	a.bus, err = flux.NewCommandBus(flux.CommandBusConfig{Repository: a.repo, Middleware: []flux.Middleware{
		flux.RetryOnConflict(flux.RetryOptions{MaxAttempts: 200, BaseDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	err = errors.Join(
		flux.HandleCommand(a.bus, func(ctx context.Context, c openTally) error {
			tl := new(Tally)
			tl.SetID(c.ID)
			flux.Raise(tl, Tallied{Tag: "opened"})
			return flux.Track(ctx, tl)
		}),
		flux.HandleCommand(a.bus, func(ctx context.Context, c gatedTally) error {
			a.calls.Add(1)
			tl, err := flux.Load[*Tally](ctx, a.repo, c.ID)
			c.ticket.wait()
			if err != nil {
				return err
			}
			flux.Raise(tl, Tallied{N: 1, Tag: "inc"})
			return nil
		}),
		flux.HandleCommandResult(a.bus, func(ctx context.Context, c gatedKeyedTally) (string, error) {
			a.calls.Add(1)
			tl := new(Tally)
			tl.SetID(c.ID)
			flux.Raise(tl, Tallied{N: 1, Tag: "keyed"})
			err := flux.Track(ctx, tl)
			c.ticket.wait()
			return "created " + c.ID, err
		}),
		flux.HandleCommand(a.bus, func(ctx context.Context, c gatedClaim) error {
			a.calls.Add(1)
			err := tallyNames.Claim(ctx, a.repo, c.Name, c.Owner)
			c.ticket.wait()
			return err
		}),
		flux.HandleCommandResult(a.bus, a.addKeyed),
	)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *tallyApp) addKeyed(ctx context.Context, c keyedTally) (string, error) {
	a.calls.Add(1)
	tl, err := flux.Load[*Tally](ctx, a.repo, c.ID)
	if err != nil {
		return "", err
	}
	if c.meanwhile != nil {
		c.meanwhile()
	}
	flux.Raise(tl, Tallied{N: 1, Tag: c.By})
	return "added by " + c.By, nil
}

func (a *tallyApp) tally(t *testing.T, id string) *Tally {
	t.Helper()
	tl, err := flux.Load[*Tally](context.Background(), a.repo, id)
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

func TestCommandBusContention(t *testing.T) {
	t.Parallel()
	t.Run("32 writers that all load before any saves are retried until each increment lands once", func(t *testing.T) {
		t.Parallel()
		a := newTallyApp(t)
		if err := a.bus.Dispatch(t.Context(), openTally{ID: "hot"}); err != nil {
			t.Fatal(err)
		}
		_, errs := contend(32, func(_ int, tk *ticket) (struct{}, error) {
			return struct{}{}, a.bus.Dispatch(context.Background(), gatedTally{ID: "hot", ticket: tk})
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("writer %d: %v", i, err)
			}
		}
		if n := a.obs.conflicts.Load(); n < 31 || a.calls.Load() != 32+n {
			t.Fatalf("%d conflicts, %d handler runs; want at least 31 conflicts and one rerun per conflict", n, a.calls.Load())
		}
		if tl := a.tally(t, "hot"); tl.Sum != 32 || tl.Version() != 33 {
			t.Fatalf("after 32 increments: sum %d, version %d", tl.Sum, tl.Version())
		}
	})
	t.Run("12 overlapping duplicates of a keyed command store one outcome and all return it", func(t *testing.T) {
		t.Parallel()
		a := newTallyApp(t)
		results, errs := contend(12, func(_ int, tk *ticket) (string, error) {
			return flux.DispatchResult[string](context.Background(), a.bus, gatedKeyedTally{ID: "k", Key: "create-k", ticket: tk})
		})
		for i := range results {
			if errs[i] != nil || results[i] != "created k" {
				t.Fatalf("duplicate %d = %q, %v", i, results[i], errs[i])
			}
		}
		if a.calls.Load() != 12 || a.obs.duplicates.Load() != 11 {
			t.Fatalf("%d handler runs, %d appends refused as duplicates; want 12 and 11", a.calls.Load(), a.obs.duplicates.Load())
		}
		if tl := a.tally(t, "k"); tl.Version() != 1 || tl.Sum != 1 {
			t.Fatalf("k: version %d, sum %d; want one event", tl.Version(), tl.Sum)
		}
	})
	t.Run("a keyed command that conflicts returns the outcome of a duplicate committed meanwhile", func(t *testing.T) {
		t.Parallel()
		a := newTallyApp(t)
		ctx := t.Context()
		if err := a.bus.Dispatch(ctx, openTally{ID: "raced"}); err != nil {
			t.Fatal(err)
		}
		// Without RetryOnConflict only the idempotency layer can turn the
		// conflict into the duplicate's outcome (a retry would find the key).
		noRetry, err := flux.NewCommandBus(flux.CommandBusConfig{Repository: a.repo})
		if err != nil {
			t.Fatal(err)
		}
		if err := flux.HandleCommandResult(noRetry, a.addKeyed); err != nil {
			t.Fatal(err)
		}
		var dupRes string
		var dupErr error
		a.obs.onConflict = func() {
			dupRes, dupErr = flux.DispatchResult[string](context.Background(), a.bus, keyedTally{ID: "raced", Key: "add", By: "duplicate"})
		}
		bump := func() { // another writer, between the load and the save
			if _, err := flux.DispatchResult[string](context.Background(), a.bus, keyedTally{ID: "raced", Key: "bump", By: "bump"}); err != nil {
				t.Error(err)
			}
		}
		res, err := flux.DispatchResult[string](ctx, noRetry, keyedTally{ID: "raced", Key: "add", By: "first", meanwhile: bump})
		if a.obs.onConflict != nil {
			t.Fatal("the command's save did not conflict")
		}
		if dupErr != nil || dupRes != "added by duplicate" || err != nil || res != "added by duplicate" {
			t.Fatalf("duplicate = %q, %v; conflicted command = %q, %v; want the duplicate's outcome for both", dupRes, dupErr, res, err)
		}
		if tl := a.tally(t, "raced"); tl.Sum != 2 || tl.ByTag["first"] != 0 || tl.ByTag["duplicate"] != 1 {
			t.Fatalf("raced: %v (sum %d); want the bump and the duplicate only", tl.ByTag, tl.Sum)
		}
	})
	for _, n := range []int{2, 10} {
		t.Run(fmt.Sprintf("of %d claims of one value that all load before any saves exactly one succeeds", n), func(t *testing.T) {
			t.Parallel()
			a := newTallyApp(t)
			owner := func(i int) string { return fmt.Sprint("owner-", i) }
			_, errs := contend(n, func(i int, tk *ticket) (struct{}, error) {
				return struct{}{}, a.bus.Dispatch(context.Background(), gatedClaim{Name: "Contested", Owner: owner(i), ticket: tk})
			})
			winner, refused := "", 0
			for i, err := range errs {
				var vt *flux.ValueTakenError
				switch {
				case err == nil && winner == "":
					winner = owner(i)
				case err == nil:
					t.Fatalf("both %s and %s claimed the value", winner, owner(i))
				case errors.As(err, &vt) && errors.Is(err, flux.ErrValueTaken):
					refused++
				default:
					t.Fatalf("claim by %s: %v", owner(i), err)
				}
			}
			if winner == "" || refused != n-1 || a.obs.conflicts.Load() != int64(n-1) || a.calls.Load() != int64(2*n-1) {
				t.Fatalf("winner %q, %d refused, %d conflicts, %d handler runs; want one winner and %d refused after one conflict and one rerun each",
					winner, refused, a.obs.conflicts.Load(), a.calls.Load(), n-1)
			}
			for i, err := range errs {
				var vt *flux.ValueTakenError
				if errors.As(err, &vt) && vt.Owner != winner {
					t.Fatalf("claim by %s refused naming %q, want the winner %q", owner(i), vt.Owner, winner)
				}
			}
			if got, err := tallyNames.Owner(t.Context(), a.repo, "contested"); err != nil || got != winner {
				t.Fatalf("value held by %q (%v), want %q", got, err, winner)
			}
		})
	}
}
