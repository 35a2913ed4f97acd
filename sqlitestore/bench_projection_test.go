package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
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

// catchUpEvents is the size of the catch-up benchmark's log.
const catchUpEvents = 1_000_000

// BenchmarkCatchUp reads a 1,000,000-event log through a subscription with
// a no-op projection, beside a raw SELECT scan of the same rows, and
// reports events/s and the peak heap during the run (the log is streamed in
// batches, so it stays flat). Setting up the log takes a while.
//
//	go test -run '^$' -bench CatchUp -benchtime 1x -count 3 ./sqlitestore | go run ./internal/benchratio
func BenchmarkCatchUp(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(b.TempDir(), "catchup.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	_, repo := benchRepoOn(b, s)
	acc := new(Account)
	acc.SetID("acc")
	for written := 0; written < catchUpEvents; written += 1000 {
		for i := 0; i < 1000; i++ {
			flux.Raise(acc, deposit)
		}
		if err := repo.Save(ctx, acc); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("raw", func(b *testing.B) {
		peak := watchHeap()
		for i := 0; i < b.N; i++ {
			// The same streaming a raw reader would do: pages of 500 rows.
			var last int64
			n := 0
			for {
				rows, err := s.rdb.QueryContext(ctx, selectColumns+` WHERE id > ? ORDER BY id LIMIT 500`, last)
				if err != nil {
					b.Fatal(err)
				}
				got := 0
				for rows.Next() {
					var pos, version int64
					var evVersion int
					var stream, aggType, eventID, name, occurred, req, corr, caus string
					var payload []byte
					var metadata sql.NullString
					if err := rows.Scan(&pos, &stream, &version, &aggType, &eventID, &name, &evVersion, &payload, &metadata, &occurred, &req, &corr, &caus); err != nil {
						b.Fatal(err)
					}
					last = pos
					got++
				}
				rows.Close()
				n += got
				if got == 0 {
					break
				}
			}
			if n != catchUpEvents {
				b.Fatalf("scanned %d", n)
			}
		}
		b.ReportMetric(float64(b.N*catchUpEvents)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(peak(), "peak-heap-MB")
	})
	b.Run("flux", func(b *testing.B) {
		peak := watchHeap()
		for i := 0; i < b.N; i++ {
			sub, err := projection.Subscribe(ctx, repo, projection.SubscriptionOptions{UpTo: catchUpEvents})
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
			if n != catchUpEvents {
				b.Fatalf("projected %d", n)
			}
		}
		b.ReportMetric(float64(b.N*catchUpEvents)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(peak(), "peak-heap-MB")
		b.ReportMetric(peakRSS(), "peak-RSS-MB")
	})
}

// watchHeap samples the live heap until the returned function is called,
// which returns the peak in MB.
func watchHeap() func() float64 {
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

// peakRSS reads the process's peak resident set (VmHWM) in MB.
func peakRSS() float64 {
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

func benchRepoOn(b *testing.B, s *Store) (*Store, *flux.Repository) {
	reg, err := flux.NewRegistry(flux.AggregateType("Account", func() *Account { return new(Account) },
		flux.EventType[Deposited]("Deposited", 1)))
	if err != nil {
		b.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: s, Registry: reg})
	if err != nil {
		b.Fatal(err)
	}
	return s, repo
}

// BenchmarkLiveLatency measures commit-to-projection latency with four
// writers appending while a projection follows the log (woken in-process):
// the p50 and p99 from the moment an append returned to the moment the
// projection handled the event.
//
//	go test -run '^$' -bench LiveLatency -benchtime 2000x ./sqlitestore
func BenchmarkLiveLatency(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, repo := benchRepo(b)
	var mu sync.Mutex
	committed := map[string]time.Time{}
	var latencies []time.Duration
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: repo, PollInterval: 50 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	handled := make(chan struct{}, 1)
	var total int
	_ = r.Add(projection.New("latency", func(ctx context.Context, e flux.Envelope) error {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if at, ok := committed[e.EventID]; ok {
			latencies = append(latencies, now.Sub(at))
		}
		total++
		if total == b.N {
			handled <- struct{}{}
		}
		return nil
	}))
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
				flux.Raise(acc, deposit)
				if err := repo.Save(ctx, acc); err != nil {
					b.Error(err)
					return
				}
				at := time.Now()
				mu.Lock()
				committed[lastEventID(b, s, acc.ID())] = at
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	select {
	case <-handled:
	case <-time.After(time.Minute):
		b.Fatal("the projection did not catch up")
	}
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(latencies)
	if len(latencies) == 0 {
		b.Fatal("no latencies measured")
	}
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
}

// lastEventID reads the ID of the newest event of a stream.
func lastEventID(b *testing.B, s *Store, stream string) string {
	var id string
	if err := s.rdb.QueryRow(`SELECT event_id FROM events WHERE aggregate_id = ? ORDER BY version DESC LIMIT 1`, stream).Scan(&id); err != nil {
		b.Fatal(err)
	}
	return id
}
