package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/txhook"
)

type tick struct {
	Writer int `json:"w"`
	N      int `json:"n"`
}

type thing struct{ flux.Root }

func (*thing) Apply(any) {}

// appendsPerWriter is 10,000 with FLUX_TEST_FULL=1 (CI), less otherwise.
func appendsPerWriter(h Harness) int {
	switch {
	case os.Getenv("FLUX_TEST_FULL") != "":
		return 10_000
	case h.Short || testing.Short():
		return 60
	default:
		return 400
	}
}

// testSubscriptionUnderWriters: 8 writers append with random commit
// delays, and some appends roll back, while a subscription follows the log
// live. The subscription runs with no tolerance for holes — a naive
// "position > last" reader — so it passes only if the backend itself hands
// out positions in commit order without holes. It must see every committed
// event exactly once, in order, and never stall on a rolled-back append.
func testSubscriptionUnderWriters(t *testing.T, h Harness) {
	s := h.New(t)
	reg, err := flux.NewRegistry(flux.AggregateType("Thing", func() *thing { return new(thing) }, flux.EventType[tick]("Tick", 1)))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: s, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	const writers = 8
	per := appendsPerWriter(h)
	rollback := errors.New("injected rollback")
	committed := make([][]string, writers)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			id := fmt.Sprintf("sub-writer-%d", w)
			var version int64
			for i := 0; i < per; i++ {
				roll := rng.IntN(100)
				delay := time.Duration(0)
				if roll < 10 {
					delay = time.Duration(rng.IntN(2000)) * time.Microsecond
				}
				ctx := txhook.WithBeforeCommit(context.Background(), func(context.Context) error {
					time.Sleep(delay)
					if roll >= 97 {
						return rollback
					}
					return nil
				})
				n := 1 + rng.IntN(2)
				evs := make([]flux.EventData, n)
				for j := range evs {
					evs[j] = event("Tick", fmt.Sprintf(`{"w":%d,"n":%d}`, w, i), time.Now())
				}
				res, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream(id, flux.ExpectedVersion(version), evs...)}})
				switch {
				case errors.Is(err, rollback):
					continue
				case err != nil:
					t.Errorf("writer %d append %d: %v", w, i, err)
					return
				}
				version = res.Versions[0]
				for _, e := range evs {
					committed[w] = append(committed[w], e.EventID)
				}
			}
		}()
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := projection.Subscribe(ctx, repo, projection.SubscriptionOptions{
		BatchSize: 200, PollInterval: time.Millisecond, GapWait: time.Nanosecond, // a naive reader
	})
	if err != nil {
		t.Fatal(err)
	}
	var seen []flux.Envelope
	var gaps []int64
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	writersDone := false
	deadline := time.Now().Add(10 * time.Minute)
	for {
		if !writersDone {
			select {
			case <-done:
				writersDone = true
			default:
			}
		}
		if writersDone {
			head := int64(0)
			for r, err := range s.ReadAll(context.Background(), flux.ReadAllOptions{}) {
				if err != nil {
					t.Fatal(err)
				}
				head = r.Position
			}
			if sub.Position() >= head {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription stalled at position %d", sub.Position())
		}
		bctx, bcancel := context.WithTimeout(ctx, 50*time.Millisecond)
		b, err := sub.Next(bctx)
		bcancel()
		if errors.Is(err, context.DeadlineExceeded) {
			continue
		}
		if err != nil {
			t.Fatalf("subscription: %v", err)
		}
		seen = append(seen, b.Events...)
		gaps = append(gaps, b.Gaps...)
	}
	if t.Failed() {
		return
	}
	want := map[string]bool{}
	total := 0
	for w := range committed {
		total += len(committed[w])
		for _, id := range committed[w] {
			want[id] = true
		}
	}
	got := map[string]bool{}
	for i, e := range seen {
		if i > 0 && e.Position <= seen[i-1].Position {
			t.Fatalf("subscription delivered position %d after %d", e.Position, seen[i-1].Position)
		}
		if got[e.EventID] {
			t.Fatalf("event %s at position %d delivered twice", e.EventID, e.Position)
		}
		got[e.EventID] = true
	}
	missing := 0
	for id := range want {
		if !got[id] {
			missing++
		}
	}
	if missing > 0 || len(seen) != total || len(gaps) > 0 {
		t.Fatalf("subscription saw %d of %d committed events (%d missing, holes at %v): a reader resuming from its last position skipped events", len(seen), total, missing, gaps)
	}
}
