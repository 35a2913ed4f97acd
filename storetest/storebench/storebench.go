// Package storebench holds the benchmarks shared by the event store
// backends: every backend's bench_test.go calls them on its own store, so
// the figures of the backends are measured the same way. Each reports a
// baseline sub-benchmark ("baseline" or "raw") beside the framework's; pipe
// the output through internal/benchratio for medians and ratios.
//
// The correctness suite is storetest; this package is apart so that a
// backend's tests do not carry benchmark code, and the other way round.
package storebench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/projection"
)

// Deposited is the event of the shared benchmarks.
type Deposited struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Note     string `json:"note"`
}

// Account is the aggregate of the shared benchmarks.
type Account struct {
	flux.Root
	Balance int64 `json:"balance"`
	Count   int   `json:"count"`
}

// SnapshotState implements flux.Snapshotter.
func (a *Account) SnapshotState() any { return a }

// RestoreSnapshot implements flux.Snapshotter.
func (a *Account) RestoreSnapshot(decode func(any) error) error { return decode(a) }

// Apply implements flux.Aggregate.
func (a *Account) Apply(e any) {
	if d, ok := e.(Deposited); ok {
		a.Balance += d.Amount
		a.Count++
	}
}

var benchDeposit = Deposited{Amount: 1250, Currency: "EUR", Note: "monthly savings transfer"}

// Repository returns a repository on store for Account, with the
// given snapshot policy.
func Repository(b testing.TB, store flux.EventStore, policy flux.SnapshotPolicy) *flux.Repository {
	b.Helper()
	reg, err := flux.NewRegistry(flux.AggregateType("Account", func() *Account { return new(Account) },
		flux.EventType[Deposited]("Deposited", 1), flux.Snapshots(policy)))
	if err != nil {
		b.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	return repo
}

// benchWrite saves one account's events, saves[i] events per save.
func benchWrite(b *testing.B, repo *flux.Repository, id string, saves ...int) {
	b.Helper()
	a := new(Account)
	a.SetID(id)
	for _, n := range saves {
		for i := 0; i < n; i++ {
			flux.Raise(a, benchDeposit)
		}
		if err := repo.Save(context.Background(), a); err != nil {
			b.Fatal(err)
		}
	}
}

// LoadSnapshots loads long-lived aggregates with snapshots every 50
// events against the baseline of loading a 50-event aggregate by replay.
// store must also be a flux.SnapshotStore. Targets: a 10,000-event
// aggregate loads in ≤ 2× the baseline's time (ratio ≥ 0.5) and ≥ 20×
// faster than the same aggregate without snapshots.
func LoadSnapshots(b *testing.B, store flux.EventStore) {
	if _, ok := store.(flux.SnapshotStore); !ok {
		b.Fatalf("%T does not implement flux.SnapshotStore", store)
	}
	snap := Repository(b, store, flux.SnapshotPolicy{Every: 50})
	noSnap := Repository(b, store, flux.SnapshotPolicy{Disabled: true})
	benchWrite(b, noSnap, "young", 50)
	benchWrite(b, snap, "old", 10000)          // snapshot at 10,000
	benchWrite(b, snap, "old-tail", 10000, 49) // snapshot at 10,000, 49 events after it
	benchWrite(b, noSnap, "old-nosnap", 10000) // no snapshot at all
	load := func(repo *flux.Repository, id string, events int, snapshot bool) func(b *testing.B) {
		return func(b *testing.B) {
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				a, err := flux.Load[*Account](ctx, repo, id)
				if err != nil {
					b.Fatal(err)
				}
				if a.Count != events || (a.LoadInfo().SnapshotVersion > 0) != snapshot {
					b.Fatalf("loaded %d events, info %+v", a.Count, a.LoadInfo())
				}
			}
		}
	}
	b.Run("baseline", load(noSnap, "young", 50, false))
	b.Run("10000-events-snapshots", load(snap, "old", 10000, true))
	b.Run("10049-events-snapshots", load(snap, "old-tail", 10049, true))
	b.Run("10000-events-no-snapshots", load(noSnap, "old-nosnap", 10000, false))
}

// RawScan reads the global log of a store up to position upTo the way a
// plain program would (one SELECT ... WHERE position <= upTo ORDER BY
// position, streamed and scanned into variables) and returns the rows read.
type RawScan func(ctx context.Context, upTo int64) (int, error)

// CatchUpEvents is the size of CatchUp's log: 1,000,000 events, or
// the positive number in FLUX_BENCH_CATCHUP_EVENTS.
func CatchUpEvents(b testing.TB) int {
	v := os.Getenv("FLUX_BENCH_CATCHUP_EVENTS")
	if v == "" {
		return 1_000_000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("FLUX_BENCH_CATCHUP_EVENTS=%q: want a positive number of events", v)
	}
	return n
}

// CatchUp writes events events to store (in saves of 1,000), then
// reads them through a subscription with a no-op projection ("flux")
// beside raw, a plain SELECT scan of the same rows ("raw"). It reports
// events/s, the peak live heap during the read, and the process's peak RSS:
// the log is streamed in batches, so memory stays flat.
func CatchUp(b *testing.B, store flux.EventStore, events int, raw RawScan) {
	ctx := context.Background()
	repo := Repository(b, store, flux.SnapshotPolicy{Disabled: true})
	saves := make([]int, 0, events/1000+1)
	for left := events; left > 0; left -= 1000 {
		saves = append(saves, min(left, 1000))
	}
	benchWrite(b, repo, "acc", saves...)
	head, err := store.(flux.Inspector).Head(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("raw", func(b *testing.B) {
		peak := WatchHeap()
		for i := 0; i < b.N; i++ {
			n, err := raw(ctx, head)
			if err != nil {
				b.Fatal(err)
			}
			if n != events {
				b.Fatalf("the raw scan read %d rows, want %d", n, events)
			}
		}
		b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(peak(), "peak-heap-MB")
	})
	b.Run("flux", func(b *testing.B) {
		peak := WatchHeap()
		for i := 0; i < b.N; i++ {
			sub, err := projection.Subscribe(ctx, repo, projection.SubscriptionOptions{UpTo: head})
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for {
				batch, err := sub.Next(ctx)
				if err == projection.ErrCaughtUp {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				n += len(batch.Events) // the no-op projection
			}
			if n != events {
				b.Fatalf("projected %d events, want %d", n, events)
			}
		}
		b.ReportMetric(float64(b.N*events)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(peak(), "peak-heap-MB")
		b.ReportMetric(PeakRSS(), "peak-RSS-MB")
	})
}

// LiveLatency measures commit-to-projection latency with four writers
// appending while a projection runner follows the log (woken by the store
// when it is a projection.Waker, polling every 50ms otherwise): the p50 and
// p99 from the moment Save returned to the moment the projection handled
// the event (p50-ms, p99-ms: a lower bound, as the commit happens before
// Save returns and the projection may handle the event first, which counts
// as 0), and from the moment Save was called (p50-call-ms, p99-call-ms: an
// upper bound, which includes the append itself), checkpoints kept in the
// store. Use a fixed -benchtime such as 2000x.
func LiveLatency(b *testing.B, store flux.EventStore) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	repo := Repository(b, store, flux.SnapshotPolicy{Disabled: true})
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: repo, PollInterval: 50 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	var (
		mu        sync.Mutex
		committed = map[string][2]time.Time{} // Save called, Save returned
		handledAt = map[string]time.Time{}
		done      = make(chan struct{})
	)
	if err := r.Add(projection.New("latency", func(ctx context.Context, e flux.Envelope) error {
		now := time.Now()
		d, ok := e.Event.(Deposited)
		if !ok {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		handledAt[d.Note] = now
		if len(handledAt) == b.N {
			close(done)
		}
		return nil
	})); err != nil {
		b.Fatal(err)
	}
	go r.Run(ctx)
	b.ResetTimer()
	var wg sync.WaitGroup
	per := (b.N + 3) / 4
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			acc := new(Account)
			acc.SetID(fmt.Sprint("writer-", w))
			for i := 0; i < per && w*per+i < b.N; i++ {
				key := fmt.Sprintf("%d-%d", w, i)
				flux.Raise(acc, Deposited{Amount: 1, Currency: "EUR", Note: key})
				called := time.Now()
				if err := repo.Save(ctx, acc); err != nil {
					b.Error(err)
					return
				}
				at := time.Now()
				mu.Lock()
				committed[key] = [2]time.Time{called, at}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatal("the projection did not catch up within a minute")
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	var fromReturn, fromCall []time.Duration
	for key, at := range committed {
		// The projection may handle an event before its writer has taken
		// the time after Save returned: that latency is 0.
		fromReturn = append(fromReturn, max(0, handledAt[key].Sub(at[1])))
		fromCall = append(fromCall, handledAt[key].Sub(at[0]))
	}
	if len(fromReturn) == 0 {
		b.Fatal("no latencies measured")
	}
	report := func(l []time.Duration, suffix string) {
		slices.Sort(l)
		b.ReportMetric(float64(l[len(l)/2].Microseconds())/1000, "p50"+suffix+"-ms")
		b.ReportMetric(float64(l[len(l)*99/100].Microseconds())/1000, "p99"+suffix+"-ms")
	}
	report(fromReturn, "")
	report(fromCall, "-call")
}

// WatchHeap samples the live heap every 5ms until the returned function is
// called, which returns the peak in MB.
func WatchHeap() func() float64 {
	runtime.GC()
	var peak uint64
	var mu sync.Mutex
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				mu.Lock()
				peak = max(peak, ms.HeapInuse)
				mu.Unlock()
			}
		}
	}()
	return func() float64 {
		close(stop)
		mu.Lock()
		defer mu.Unlock()
		return float64(peak) / (1 << 20)
	}
}

// PeakRSS reads the process's peak resident set (VmHWM, Linux) in MB; 0
// where /proc is not available.
func PeakRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
