package projection_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/txhook"
	"github.com/fluxcapacitor/flux/uuid"
)

type Deposited struct {
	Amount int `json:"amount"`
}

type Opened struct {
	Owner string `json:"owner"`
}

type Account struct {
	flux.Root
	Balance int
}

func (a *Account) Apply(e any) {
	if d, ok := e.(Deposited); ok {
		a.Balance += d.Amount
	}
}

type Tag struct{ flux.Root }

type Tagged struct{}

func (*Tag) Apply(any) {}

var ids uuid.Generator

func setup(t testing.TB) (*memstore.Store, *flux.Repository) {
	t.Helper()
	reg, err := flux.NewRegistry(
		flux.AggregateType("Account", func() *Account { return new(Account) },
			flux.EventType[Opened]("Opened", 1),
			flux.EventType[Deposited]("Deposited", 2, flux.Upcast(1, func(p *flux.Payload) error {
				p.Rename("amt", "amount")
				return nil
			}))),
		flux.AggregateType("Tag", func() *Tag { return new(Tag) }, flux.EventType[Tagged]("Tagged", 1)),
	)
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return store, repo
}

func deposit(t testing.TB, repo *flux.Repository, id string, amounts ...int) {
	t.Helper()
	a, err := flux.Load[*Account](context.Background(), repo, id)
	if errors.Is(err, flux.ErrAggregateNotFound) {
		a = new(Account)
		a.SetID(id)
		flux.Raise(a, Opened{Owner: id})
	} else if err != nil {
		t.Fatal(err)
	}
	for _, n := range amounts {
		flux.Raise(a, Deposited{Amount: n})
	}
	if err := repo.Save(context.Background(), a); err != nil {
		t.Fatal(err)
	}
}

func raw(t testing.TB, store flux.EventStore, stream, aggType, name string, version int, payload string) {
	t.Helper()
	_, err := store.Append(context.Background(), flux.AppendRequest{Streams: []flux.StreamAppend{{
		StreamID: stream, AggregateType: aggType, Expected: flux.Any,
		Events: []flux.EventData{{EventID: ids.New(), EventName: name, EventVersion: version, Payload: []byte(payload), OccurredAt: time.Now()}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or 10s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func status(t testing.TB, r *projection.Runner, name string) projection.Status {
	t.Helper()
	all, err := r.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no status for %s", name)
	return projection.Status{}
}

// balances is an at-least-once read model deduplicating by event ID.
type balances struct {
	mu   sync.Mutex
	sum  map[string]int
	seen map[string]bool
	dups int
}

func newBalances() *balances { return &balances{sum: map[string]int{}, seen: map[string]bool{}} }

func (b *balances) handle(ctx context.Context, e flux.Envelope) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen[e.EventID] {
		b.dups++
		return nil
	}
	b.seen[e.EventID] = true
	if d, ok := e.Event.(Deposited); ok {
		b.sum[e.StreamID] += d.Amount
	}
	return nil
}

func (b *balances) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.seen)
}

func (b *balances) total() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, v := range b.sum {
		n += v
	}
	return n
}

func TestRunnerFollowsTheLogLive(t *testing.T) {
	t.Parallel()
	store, repo := setup(t)
	deposit(t, repo, "a", 1, 2)
	raw(t, store, "old", "Account", "Deposited", 1, `{"amt":100}`) // upcast on the way
	raw(t, store, "t1", "Tag", "Tagged", 1, `{}`)
	bal := newBalances()
	var tagged atomic.Int64
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: repo, PollInterval: time.Hour}) // wake-ups only
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(projection.New("balances", bal.handle, projection.Events("Deposited"))); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(projection.New("tags", func(context.Context, flux.Envelope) error { tagged.Add(1); return nil }, projection.AggregateTypes("Tag"))); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(projection.New("tags", nil)); err == nil {
		t.Fatal("duplicate projection name accepted")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, "catch-up", func() bool { return bal.total() == 103 && tagged.Load() == 1 })
	deposit(t, repo, "b", 5)
	deposit(t, repo, "a", 7)
	waitFor(t, "live events", func() bool { return bal.total() == 115 })
	st := status(t, r, "balances")
	if st.Position != 8 || st.Head != 8 || st.LagEvents != 0 || st.Processed != 5 || !st.Running || st.LastError != "" {
		t.Fatalf("status = %+v", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A new runner resumes from the stored checkpoint: nothing twice.
	deposit(t, repo, "c", 1000)
	r2, err := projection.NewRunner(projection.RunnerConfig{Repository: repo})
	if err != nil {
		t.Fatal(err)
	}
	_ = r2.Add(projection.New("balances", bal.handle, projection.Events("Deposited")))
	if s := status(t, r2, "balances"); s.Position != 8 || s.LagEvents != 2 || s.Lag <= 0 {
		t.Fatalf("status before restart = %+v", s)
	}
	ctx2, cancel2 := context.WithCancel(t.Context())
	go r2.Run(ctx2)
	waitFor(t, "resume", func() bool { return bal.total() == 1115 })
	cancel2()
	if bal.dups != 0 {
		t.Fatalf("%d events delivered twice after a clean restart", bal.dups)
	}
}

func TestUndecodableEventsStopOrAreSkippedAndRecorded(t *testing.T) {
	t.Parallel()
	for _, policy := range []projection.UndecodablePolicy{projection.StopOnUndecodable, projection.SkipUndecodable} {
		t.Run(fmt.Sprint("policy ", policy), func(t *testing.T) {
			store, repo := setup(t)
			deposit(t, repo, "a", 1)
			raw(t, store, "a", "Account", "Deposited", 2, `{"amount":"not a number"}`) // position 3
			deposit(t, repo, "b", 10)
			bal := newBalances()
			other := newBalances()
			r, err := projection.NewRunner(projection.RunnerConfig{Repository: repo, Undecodable: policy, MinBackoff: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			_ = r.Add(projection.New("balances", bal.handle))
			_ = r.Add(projection.New("openings", other.handle, projection.Events("Opened")))
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			go r.Run(ctx)
			waitFor(t, "openings", func() bool { return other.count() == 2 })
			if policy == projection.StopOnUndecodable {
				waitFor(t, "stop", func() bool { return status(t, r, "balances").Stopped })
				st := status(t, r, "balances")
				if st.Position != 2 || bal.total() != 1 || !strings.Contains(st.LastError, `stream "a" version 3`) || st.Running {
					t.Fatalf("stopped status = %+v, total %d", st, bal.total())
				}
				return
			}
			waitFor(t, "skip", func() bool { return bal.total() == 11 })
			st := status(t, r, "balances")
			if len(st.Skipped) != 1 || st.Skipped[0].Position != 3 || st.Skipped[0].StreamID != "a" || st.Stopped {
				t.Fatalf("skipped status = %+v", st)
			}
		})
	}
}

func TestFailingHandlerBacksOffAndRetries(t *testing.T) {
	t.Parallel()
	_, repo := setup(t)
	deposit(t, repo, "a", 1, 2, 3)
	var calls atomic.Int64
	bal := newBalances()
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: repo, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Add(projection.New("flaky", func(ctx context.Context, e flux.Envelope) error {
		if calls.Add(1) <= 5 {
			return errors.New("read model database down")
		}
		return bal.handle(ctx, e)
	}))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	waitFor(t, "recovery", func() bool { return bal.total() == 6 })
	st := status(t, r, "flaky")
	if st.Failures != 0 || !strings.Contains(st.LastError, "read model database down") || st.LastErrorAt.IsZero() {
		t.Fatalf("status after recovery = %+v", st)
	}
}

func TestHeldTransactionDelaysButLosesNothing(t *testing.T) {
	t.Parallel()
	store, repo := setup(t)
	bal := newBalances()
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: repo, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Add(projection.New("balances", bal.handle))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	hold, held := make(chan struct{}), make(chan struct{})
	go func() {
		hctx := txhook.WithBeforeCommit(context.Background(), func(context.Context) error {
			close(held)
			<-hold
			return nil
		})
		a := new(Account)
		a.SetID("slow")
		flux.Raise(a, Deposited{Amount: 1})
		if err := repo.Save(hctx, a); err != nil {
			t.Error(err)
		}
	}()
	<-held
	writers := sync.WaitGroup{}
	for i := 0; i < 4; i++ {
		writers.Add(1)
		go func() {
			defer writers.Done()
			deposit(t, repo, fmt.Sprint("w", i), 10)
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if got := bal.total(); got != 0 {
		t.Fatalf("delivered %d before the held transaction committed", got)
	}
	close(hold)
	writers.Wait()
	waitFor(t, "delivery", func() bool { return bal.total() == 41 })
	if st := status(t, r, "balances"); st.Latency < 250*time.Millisecond || st.LagEvents != 0 {
		t.Fatalf("status = %+v: the delay should show as latency", st)
	}
	_ = store
}

func TestRebuildInPlaceAndBySwap(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, repo := setup(t)
	for i := 0; i < 20; i++ {
		deposit(t, repo, fmt.Sprint("acc", i%4), i)
	}
	// In place, with progress.
	bal := newBalances()
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: repo, BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Add(projection.New("balances", bal.handle, projection.OnReset(func(context.Context) error {
		*bal = *newBalances()
		return nil
	})))
	var progress []projection.Progress
	if err := r.Rebuild(ctx, "balances", projection.ReplayOptions{Progress: func(p projection.Progress) { progress = append(progress, p) }}); err != nil {
		t.Fatal(err)
	}
	last := progress[len(progress)-1]
	if bal.total() != 190 || !last.Done || last.Position != 24 || last.Head != 24 || last.Events != 24 || len(progress) < 4 {
		t.Fatalf("rebuild: total %d, progress %+v", bal.total(), progress)
	}
	if err := r.Rebuild(ctx, "balances", projection.ReplayOptions{From: 20}); err != nil {
		t.Fatal(err)
	}
	if bal.total() != 19+18+17+16 {
		t.Fatalf("rebuild from 20: total %d", bal.total())
	}
	// By swap: readers keep the complete old model until the new one is in.
	sw := &swapModel{live: newBalances(), cps: repo.Store().(projection.CheckpointStore)}
	sw.live.sum["stale"] = 1
	r2, err := projection.NewRunner(projection.RunnerConfig{Repository: repo, BatchSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	_ = r2.Add(sw)
	var during []int
	err = r2.RebuildSwap(ctx, "swapped", projection.ReplayOptions{Progress: func(p projection.Progress) {
		during = append(during, sw.read().total())
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range during {
		if v != 1 {
			t.Fatalf("readers saw a half-built model: %v", during)
		}
	}
	if sw.read().total() != 190 {
		t.Fatalf("after swap: %d", sw.read().total())
	}
	if cp, _ := sw.cps.LoadCheckpoint(ctx, "swapped"); cp.Position != 24 {
		t.Fatalf("live checkpoint after swap = %d", cp.Position)
	}
	if err := r2.Rebuild(ctx, "swapped", projection.ReplayOptions{}); err == nil {
		t.Fatal("in-place rebuild of a projection without Reset succeeded")
	}
}

// swapModel keeps its live read model in a pointer that Swap replaces.
type swapModel struct {
	mu     sync.Mutex
	live   *balances
	shadow *balances
	cps    projection.CheckpointStore
}

func (s *swapModel) Name() string              { return "swapped" }
func (s *swapModel) Filter() projection.Filter { return projection.Filter{} }
func (s *swapModel) read() *balances           { s.mu.Lock(); defer s.mu.Unlock(); return s.live }
func (s *swapModel) Handle(ctx context.Context, e flux.Envelope) error {
	return s.read().handle(ctx, e)
}

func (s *swapModel) Shadow(ctx context.Context) (projection.Projection, error) {
	s.shadow = newBalances()
	return projection.New("swapped#next", s.shadow.handle), nil
}

func (s *swapModel) Swap(ctx context.Context, cp projection.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live = s.shadow
	return s.cps.SaveCheckpoint(ctx, projection.Checkpoint{Name: "swapped", Position: cp.Position, Supersedes: projection.AnyPosition, UpdatedAt: time.Now()})
}

type rawCounter struct {
	mu    sync.Mutex
	names []string
}

func (r *rawCounter) Name() string              { return "raw" }
func (r *rawCounter) Filter() projection.Filter { return projection.Filter{} }
func (r *rawCounter) RawRecords() bool          { return true }
func (r *rawCounter) Handle(ctx context.Context, e flux.Envelope) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Event != nil {
		return errors.New("a raw projection got a decoded event")
	}
	r.names = append(r.names, fmt.Sprintf("%s v%d", e.EventName, e.EventVersion))
	return nil
}

func (r *rawCounter) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.names)
}

func TestRawProjectionsGetStoredRecordsEvenUndecodableOnes(t *testing.T) {
	t.Parallel()
	store, repo := setup(t)
	deposit(t, repo, "a", 1)
	raw(t, store, "a", "Account", "Deposited", 2, `{"amount":"not a number"}`)
	raw(t, store, "x", "Account", "NoSuchEvent", 1, `{}`)
	raw(t, store, "old", "Account", "Deposited", 1, `{"amt":5}`)
	rc := &rawCounter{}
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: repo})
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Add(rc)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go r.Run(ctx)
	waitFor(t, "raw records", func() bool { return rc.count() == 5 })
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if got := strings.Join(rc.names, ","); got != "Opened v1,Deposited v2,Deposited v2,NoSuchEvent v1,Deposited v1" {
		t.Fatalf("raw records = %s", got)
	}
	_ = store
}
