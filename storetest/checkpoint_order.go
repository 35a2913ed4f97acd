package storetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/projection"
)

// The cases of this file pin the order of checkpoints: a checkpoint write
// is conditional (it moves the checkpoint only from the position the
// writer read), so runners of one projection in several processes never
// move it backwards, and the runner treats a lost race as no failure.

// testCheckpointWrites: SaveCheckpoint moves a checkpoint only from
// Checkpoint.Supersedes; a stale write changes nothing and says, typed,
// where the checkpoint is.
func testCheckpointWrites(t *testing.T, h Harness) {
	s := h.New(t)
	cs := as[projection.CheckpointStore](t, s, "projection.CheckpointStore")
	ctx := context.Background()
	save := func(supersedes, pos int64) error {
		return cs.SaveCheckpoint(ctx, projection.Checkpoint{Name: "p", Position: pos, Supersedes: supersedes, UpdatedAt: base.Add(time.Duration(pos) * time.Second)})
	}
	at := func(want int64) {
		t.Helper()
		cp, err := cs.LoadCheckpoint(ctx, "p")
		if err != nil || cp.Position != want {
			t.Fatalf("checkpoint = %+v, %v; want position %d", cp, err, want)
		}
		if want > 0 && !cp.UpdatedAt.Equal(base.Add(time.Duration(want)*time.Second)) {
			t.Fatalf("checkpoint updated at %v, want the time of the save to %d", cp.UpdatedAt, want)
		}
	}
	behind := func(err error, supersedes, pos, stored int64) {
		t.Helper()
		var be *projection.CheckpointBehindError
		if !errors.As(err, &be) || !errors.Is(err, projection.ErrCheckpointMoved) {
			t.Fatalf("err = %v (%T), want a *projection.CheckpointBehindError matching ErrCheckpointMoved", err, err)
		}
		if be.Name != "p" || be.Supersedes != supersedes || be.Position != pos || be.Stored != stored {
			t.Fatalf("error = %+v, want name p, supersedes %d, position %d, stored %d", *be, supersedes, pos, stored)
		}
	}
	if err := save(0, 5); err != nil {
		t.Fatalf("first save from 0: %v", err)
	}
	at(5)
	behind(save(0, 9), 0, 9, 5) // a second runner that read no checkpoint
	behind(save(3, 9), 3, 9, 5) // one that read an older one
	behind(save(7, 9), 7, 9, 5) // one that thinks it is further
	behind(save(0, 3), 0, 3, 5) // an older write arriving late: never backwards
	at(5)
	if err := save(5, 9); err != nil {
		t.Fatalf("save from 5 to 9: %v", err)
	}
	at(9)
	// A deliberate move back names the position it replaces.
	if err := save(9, 2); err != nil {
		t.Fatalf("reset from 9 to 2: %v", err)
	}
	at(2)
	behind(save(9, 12), 9, 12, 2) // a runner that missed the reset
	if err := save(projection.AnyPosition, 7); err != nil {
		t.Fatalf("save with AnyPosition: %v", err)
	}
	at(7)
	if err := cs.DeleteCheckpoint(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	behind(save(7, 8), 7, 8, 0) // deleted: stored at 0
	if err := save(0, 1); err != nil {
		t.Fatalf("save from 0 after a delete: %v", err)
	}
	at(1)
	// Saving the position it is at is no move, but succeeds.
	if err := save(1, 1); err != nil {
		t.Fatalf("save from 1 to 1: %v", err)
	}
	at(1)
}

// testConcurrentCheckpointWriters: in each round, writers load the
// checkpoint, meet, and all try to move it forward from there at once,
// while a reader watches it. Exactly one wins each round, it never moves
// backwards, and the writes that succeed form one chain from 0 to the
// final position: no write was lost or overwritten.
func testConcurrentCheckpointWriters(t *testing.T, h Harness) {
	s := h.New(t)
	cs := as[projection.CheckpointStore](t, s, "projection.CheckpointStore")
	ctx := context.Background()
	const writers = 6
	rounds := 30
	if h.Short || testing.Short() {
		rounds = 10
	}
	type move struct{ from, to int64 }
	var moves []move
	done := make(chan struct{})
	watched := make(chan error, 1)
	go func() { watched <- watchCheckpoint(ctx, cs, "race", done) }()
	for round := 0; round < rounds; round++ {
		var (
			mu     sync.Mutex
			won    []move
			loaded sync.WaitGroup
			wg     sync.WaitGroup
		)
		loaded.Add(writers)
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cp, err := cs.LoadCheckpoint(ctx, "race")
				loaded.Done()
				if err != nil {
					t.Error(err)
					return
				}
				loaded.Wait() // every writer has read before any writes
				to := cp.Position + 1 + int64((w+round)%3)
				err = cs.SaveCheckpoint(ctx, projection.Checkpoint{Name: "race", Position: to, Supersedes: cp.Position, UpdatedAt: base})
				var be *projection.CheckpointBehindError
				switch {
				case err == nil:
					mu.Lock()
					won = append(won, move{cp.Position, to})
					mu.Unlock()
				case errors.As(err, &be):
					if be.Stored <= cp.Position {
						t.Errorf("writer %d: refused from %d, but the checkpoint is stored at %d: it never moves backwards", w, cp.Position, be.Stored)
					}
				default:
					t.Errorf("writer %d: save from %d to %d: %v", w, cp.Position, to, err)
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			break
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d of %d writers that read the same checkpoint moved it (%v), want exactly 1", round, len(won), writers, won)
		}
		moves = append(moves, won...)
	}
	close(done)
	if err := <-watched; err != nil {
		t.Fatal(err)
	}
	final, err := cs.LoadCheckpoint(ctx, "race")
	if err != nil {
		t.Fatal(err)
	}
	at := int64(0)
	for _, m := range moves {
		if m.from != at {
			t.Fatalf("successful writes %v do not chain from 0: one from %d, the checkpoint was at %d", moves, m.from, at)
		}
		at = m.to
	}
	if at != final.Position {
		t.Fatalf("successful writes end at %d, the checkpoint is at %d", at, final.Position)
	}
}

// watchCheckpoint loads the named checkpoint until done is closed and
// returns an error if it ever moved backwards.
func watchCheckpoint(ctx context.Context, cs projection.CheckpointStore, name string, done <-chan struct{}) error {
	last := int64(0)
	backwards := 0
	var first error
	for {
		select {
		case <-done:
			if backwards > 0 {
				return fmt.Errorf("checkpoint %q moved backwards %d times; first: %w", name, backwards, first)
			}
			return nil
		default:
		}
		cp, err := cs.LoadCheckpoint(ctx, name)
		if err != nil {
			return err
		}
		if cp.Position < last {
			if backwards == 0 {
				first = fmt.Errorf("from %d to %d", last, cp.Position)
			}
			backwards++
		}
		last = max(last, cp.Position)
	}
}

// levels counts the log records of a runner by level.
type levels struct {
	mu     sync.Mutex
	counts map[slog.Level]int
	warns  []string
}

func (l *levels) Enabled(context.Context, slog.Level) bool { return true }
func (l *levels) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = map[slog.Level]int{}
	}
	l.counts[r.Level]++
	if r.Level >= slog.LevelWarn {
		msg := r.Message
		r.Attrs(func(a slog.Attr) bool { msg += " " + a.String(); return true })
		l.warns = append(l.warns, msg)
	}
	return nil
}
func (l *levels) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *levels) WithGroup(string) slog.Handler      { return l }

func (l *levels) count(lv slog.Level) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[lv]
}

func (l *levels) warnings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.warns)
}

// sleeps records the waits of a runner (RunnerConfig.Sleep) and returns at
// once.
type sleeps struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.waits = append(s.waits, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.waits)
}

func tickRepository(t *testing.T, s flux.EventStore) *flux.Repository {
	t.Helper()
	reg, err := flux.NewRegistry(flux.AggregateType("Thing", func() *thing { return new(thing) }, flux.EventType[tick]("Tick", 1)))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: s, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

func appendTicks(t *testing.T, s flux.EventStore, id string, n int) {
	t.Helper()
	evs := make([]flux.EventData, n)
	for i := range evs {
		evs[i] = event("Tick", fmt.Sprintf(`{"n":%d}`, i), base)
	}
	mustAppend(t, s, stream(id, flux.Any, evs...))
}

// waitCheckpoint waits, polling, until the named checkpoint reaches pos or
// ctx ends.
func waitCheckpoint(ctx context.Context, t *testing.T, cs projection.CheckpointStore, name string, pos int64) {
	t.Helper()
	for {
		cp, err := cs.LoadCheckpoint(ctx, name)
		if err != nil {
			t.Fatalf("checkpoint %q: %v", name, err)
		}
		if cp.Position >= pos {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("checkpoint %q at %d, never reached %d: %v", name, cp.Position, pos, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// testRunnersShareAProjection: three runners (as three processes would)
// follow one at-least-once projection while a writer appends. The
// checkpoint never moves backwards, every event is handled by some
// runner, and a runner losing a race logs no warning and counts no
// failure.
func testRunnersShareAProjection(t *testing.T, h Harness) {
	s := h.New(t)
	cs := as[projection.CheckpointStore](t, s, "projection.CheckpointStore")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	appends, per := 40, 5
	if h.Short || testing.Short() {
		appends = 15
	}
	var (
		mu   sync.Mutex
		seen = map[int64]int{}
	)
	const name = "shared"
	log := &levels{}
	sl := &sleeps{}
	runners := make([]*projection.Runner, 3)
	for i := range runners {
		r, err := projection.NewRunner(projection.RunnerConfig{
			Repository: tickRepository(t, s), BatchSize: 4, PollInterval: 2 * time.Millisecond,
			Logger: slog.New(log), Sleep: sl.sleep,
		})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Add(projection.New(name, func(ctx context.Context, e flux.Envelope) error {
			mu.Lock()
			seen[e.Position]++
			mu.Unlock()
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		runners[i] = r
	}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(rctx) }()
	}
	done := make(chan struct{})
	watched := make(chan error, 1)
	go func() { watched <- watchCheckpoint(ctx, cs, name, done) }()
	for i := 0; i < appends; i++ {
		appendTicks(t, s, fmt.Sprintf("shared-%d", i%3), per)
	}
	total := int64(appends * per)
	waitCheckpoint(ctx, t, cs, name, total)
	stop()
	wg.Wait()
	close(done)
	if err := <-watched; err != nil {
		t.Fatal(err)
	}
	for p := int64(1); p <= total; p++ {
		if seen[p] == 0 {
			t.Fatalf("event at position %d was handled by no runner", p)
		}
	}
	checkNoFailures(t, runners, log, sl)
	t.Logf("%d events handled %d times by 3 runners; %d races lost", total, sum(seen), log.count(slog.LevelDebug))
}

func sum(m map[int64]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func checkNoFailures(t *testing.T, runners []*projection.Runner, log *levels, sl *sleeps) {
	t.Helper()
	if w := log.warnings(); len(w) > 0 {
		t.Errorf("%d warnings logged, want none; first: %s", len(w), w[0])
	}
	if waits := sl.all(); len(waits) > 0 {
		t.Errorf("runners backed off %d times (%v), want never", len(waits), waits)
	}
	for i, r := range runners {
		st, err := r.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.Failures != 0 || s.LastError != "" {
				t.Errorf("runner %d: %s: %d failures, last error %q; losing a race is no failure", i, s.Name, s.Failures, s.LastError)
			}
		}
	}
}

// testBackoffResets: a projection fails three times, succeeds, fails
// again: the runner waits MinBackoff, 2x, 4x, and after the success
// MinBackoff again, not 8x.
func testBackoffResets(t *testing.T, h Harness) {
	s := h.New(t)
	as[projection.CheckpointStore](t, s, "projection.CheckpointStore") // the runner keeps its checkpoint there
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	appendTicks(t, s, "backoff", 3)
	sl := &sleeps{}
	r, err := projection.NewRunner(projection.RunnerConfig{
		Repository: tickRepository(t, s), BatchSize: 1, PollInterval: 2 * time.Millisecond,
		MinBackoff: time.Second, MaxBackoff: time.Minute, Sleep: sl.sleep,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Calls 1-3 fail (event 1), 4 succeeds, 5 fails (event 2), 6 and 7
	// succeed, then the runner stops.
	var calls atomic.Int32
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	transient := fmt.Errorf("transient: %w", flux.ErrStoreUnavailable)
	err = r.Add(projection.New("flaky", func(ctx context.Context, e flux.Envelope) error {
		switch n := calls.Add(1); n {
		case 1, 2, 3, 5:
			return transient
		case 7:
			stop()
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Run(rctx)
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, time.Second}
	if got := sl.all(); !slices.Equal(got, want) {
		t.Fatalf("waits = %v, want %v: the backoff must return to MinBackoff after a successful batch", got, want)
	}
}

// testTxRunnersRace: three runners follow one exactly-once (NewTx)
// projection. Every event is applied exactly once, the checkpoint never
// moves backwards, and a runner whose batch another runner committed first
// skips to the new checkpoint: no warning, no failure, no backoff.
func testTxRunnersRace[Tx any](t *testing.T, h TxHarness[Tx]) {
	ts, cs := h.New(t)
	store, ok := ts.(interface {
		projection.TxStore[Tx]
		projection.CheckpointStore
	})
	if !ok {
		t.Fatalf("store %T is not a projection.CheckpointStore", ts)
	}
	es, ok := ts.(flux.EventStore)
	if !ok {
		t.Fatalf("store %T is not a flux.EventStore", ts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const name, key = "tx-race", "tx-race-events"
	const total = 300
	for i := 0; i < total/50; i++ {
		appendTicks(t, es, fmt.Sprintf("tx-race-%d", i), 50)
	}
	log := &levels{}
	sl := &sleeps{}
	runners := make([]*projection.Runner, 3)
	for i := range runners {
		r, err := projection.NewRunner(projection.RunnerConfig{
			Repository: tickRepository(t, es), Checkpoints: cs, BatchSize: 5, PollInterval: 2 * time.Millisecond,
			Logger: slog.New(log), Sleep: sl.sleep,
		})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Add(projection.NewTx(name, store, func(ctx context.Context, tx Tx, e flux.Envelope) error {
			return h.Increment(ctx, tx, key)
		}))
		if err != nil {
			t.Fatal(err)
		}
		runners[i] = r
	}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(rctx) }()
	}
	done := make(chan struct{})
	watched := make(chan error, 1)
	go func() { watched <- watchCheckpoint(ctx, cs, name, done) }()
	waitCheckpoint(ctx, t, cs, name, total)
	stop()
	wg.Wait()
	close(done)
	if err := <-watched; err != nil {
		t.Fatal(err)
	}
	if n := h.Count(ctx, t, ts, key); n != total {
		t.Fatalf("counter = %d, want %d: an event was applied twice or lost", n, total)
	}
	checkNoFailures(t, runners, log, sl)
	t.Logf("%d events applied once by 3 runners; %d races lost", total, log.count(slog.LevelDebug))
}
