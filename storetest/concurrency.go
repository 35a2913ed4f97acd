package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/txhook"
)

// testRace: 16 writers race for the same next version of one stream, round
// after round. Exactly one wins each round; every other gets a typed
// conflict naming the winner's version; the stream ends with no gaps.
func testRace(t *testing.T, h Harness) {
	s := h.New(t)
	const writers = 16
	rounds := 200
	if h.Short || testing.Short() {
		rounds = 25
	}
	const id = "contended"
	for round := 0; round < rounds; round++ {
		expected := flux.ExpectedVersion(round)
		start := make(chan struct{})
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[w] = s.Append(context.Background(), flux.AppendRequest{Streams: []flux.StreamAppend{
					stream(id, expected, event("Incremented", fmt.Sprintf(`{"writer":%d,"round":%d}`, w, round), base)),
				}})
			}()
		}
		close(start)
		wg.Wait()
		winners := 0
		for w, err := range errs {
			if err == nil {
				winners++
				continue
			}
			var ce *flux.ConflictError
			if !errors.As(err, &ce) || !errors.Is(err, flux.ErrConcurrencyConflict) {
				t.Fatalf("round %d writer %d: err = %v (%T), want *flux.ConflictError", round, w, err, err)
			}
			if ce.StreamID != id || ce.Expected != expected || ce.Actual != int64(round)+1 {
				t.Fatalf("round %d writer %d: conflict {stream %q expected %v actual %d}, want {%q %v %d}",
					round, w, ce.StreamID, ce.Expected, ce.Actual, id, expected, round+1)
			}
		}
		if winners != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", round, winners)
		}
	}
	recs := readStream(t, s, id, flux.ReadStreamOptions{})
	if len(recs) != rounds {
		t.Fatalf("stream has %d events after %d rounds", len(recs), rounds)
	}
	for i, r := range recs {
		if r.StreamVersion != int64(i+1) {
			t.Fatalf("version gap: record %d has version %d", i, r.StreamVersion)
		}
	}
}

// testGlobalLogOrder: 8 writers append with random commit delays while a
// follower reads the log from the last position it saw. The follower must
// see every event exactly once in increasing position order, and an append
// that returned before another began must have the lower positions.
func testGlobalLogOrder(t *testing.T, h Harness) {
	s := h.New(t)
	const writers = 8
	perWriter := 120
	if h.Short || testing.Short() {
		perWriter = 25
	}
	type span struct {
		start, end int64
		positions  []int64
	}
	var clock atomic.Int64
	spans := make([][]span, writers)
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			id := fmt.Sprintf("writer-%d", w)
			var version int64
			for i := 0; i < perWriter; i++ {
				delay := time.Duration(rng.IntN(1500)) * time.Microsecond
				ctx := txhook.WithBeforeCommit(context.Background(), func(context.Context) error {
					time.Sleep(delay)
					return nil
				})
				n := 1 + rng.IntN(3)
				st := clock.Add(1)
				res, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{
					stream(id, flux.ExpectedVersion(version), events(n, "Appended")...),
				}})
				en := clock.Add(1)
				if err != nil {
					t.Errorf("writer %d append %d: %v", w, i, err)
					return
				}
				version = res.Versions[0]
				spans[w] = append(spans[w], span{st, en, res.Positions})
			}
		}()
	}

	var seen []flux.Record
	done := make(chan struct{})
	followerErr := make(chan error, 1)
	go func() {
		var last int64
		finished := false
		for {
			select {
			case <-done:
				finished = true
			default:
			}
			n := 0
			for r, err := range s.ReadAll(context.Background(), flux.ReadAllOptions{After: last, Limit: 100}) {
				if err != nil {
					followerErr <- err
					return
				}
				seen = append(seen, r)
				last = r.Position
				n++
			}
			if finished && n == 0 {
				followerErr <- nil
				return
			}
			if n == 0 {
				time.Sleep(200 * time.Microsecond)
			}
		}
	}()
	wg.Wait()
	close(done)
	if err := <-followerErr; err != nil {
		t.Fatalf("follower: %v", err)
	}
	if t.Failed() {
		return
	}

	all := readAll(t, s, flux.ReadAllOptions{})
	increasing(t, "global log positions", positions(all))
	if len(seen) != len(all) {
		t.Fatalf("follower saw %d records, the log holds %d: a reader resuming from its last position skipped or repeated events", len(seen), len(all))
	}
	for i := range all {
		if seen[i].Position != all[i].Position || seen[i].EventID != all[i].EventID {
			t.Fatalf("follower record %d = position %d, log has %d", i, seen[i].Position, all[i].Position)
		}
	}
	var flat []span
	for w := range spans {
		flat = append(flat, spans[w]...)
		// Each writer's stream has contiguous versions.
		recs := readStream(t, s, fmt.Sprintf("writer-%d", w), flux.ReadStreamOptions{})
		for i, r := range recs {
			if r.StreamVersion != int64(i+1) {
				t.Fatalf("writer %d stream: record %d has version %d", w, i, r.StreamVersion)
			}
		}
	}
	for _, x := range flat {
		for _, y := range flat {
			if x.end < y.start && x.positions[len(x.positions)-1] >= y.positions[0] {
				t.Fatalf("append that returned first has position %d, a later append got %d: positions do not follow commit order",
					x.positions[len(x.positions)-1], y.positions[0])
			}
		}
	}
}

// testHeldTransaction: an append holds its transaction open after writing,
// as a slow writer would; meanwhile a second writer appends and a reader
// reads the log. A reader that then resumes from the highest position it
// saw must still receive the held append's events once it commits. A
// backend that hands out positions from a plain sequence and lets the
// second writer commit first fails here.
func testHeldTransaction(t *testing.T, h Harness) {
	s := h.New(t)
	mustAppend(t, s, stream("before", flux.NoStream, event("E", `{}`, base)))
	for attempt := 0; attempt < 3; attempt++ {
		hold, held := make(chan struct{}), make(chan struct{})
		slowDone, fastDone := make(chan error, 1), make(chan error, 1)
		slowID, fastID := fmt.Sprintf("slow-%d", attempt), fmt.Sprintf("fast-%d", attempt)
		go func() {
			ctx := txhook.WithBeforeCommit(context.Background(), func(context.Context) error {
				close(held)
				<-hold
				return nil
			})
			_, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream(slowID, flux.NoStream, events(2, "Slow")...)}})
			slowDone <- err
		}()
		<-held
		go func() {
			_, err := s.Append(context.Background(), flux.AppendRequest{Streams: []flux.StreamAppend{stream(fastID, flux.NoStream, events(2, "Fast")...)}})
			fastDone <- err
		}()
		// Give the fast writer time to commit if the backend lets it.
		select {
		case err := <-fastDone:
			fastDone <- err
		case <-time.After(300 * time.Millisecond):
		}
		var checkpoint int64
		for r, err := range s.ReadAll(context.Background(), flux.ReadAllOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			checkpoint = r.Position
		}
		close(hold)
		if err := <-slowDone; err != nil {
			t.Fatalf("slow append: %v", err)
		}
		if err := <-fastDone; err != nil {
			t.Fatalf("fast append: %v", err)
		}
		got := map[string]int{}
		for _, r := range readAll(t, s, flux.ReadAllOptions{After: checkpoint}) {
			got[r.StreamID]++
		}
		if got[slowID] != 2 {
			t.Fatalf("attempt %d: after resuming from position %d the reader got %d of the held append's 2 events: it was skipped", attempt, checkpoint, got[slowID])
		}
	}
}

// testConcurrentAny: writers appending with flux.Any never conflict with
// each other, and the stream ends with every event, versions contiguous.
func testConcurrentAny(t *testing.T, h Harness) {
	s := h.New(t)
	const writers, per = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers*per)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				_, err := s.Append(context.Background(), flux.AppendRequest{Streams: []flux.StreamAppend{
					stream("any", flux.Any, event("E", fmt.Sprintf(`{"w":%d,"i":%d}`, w, i), base), event("E", `{}`, base)),
				}})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append with flux.Any: %v", err)
	}
	recs := readStream(t, s, "any", flux.ReadStreamOptions{})
	if len(recs) != writers*per*2 {
		t.Fatalf("stream has %d events, want %d", len(recs), writers*per*2)
	}
	for i, r := range recs {
		if r.StreamVersion != int64(i+1) {
			t.Fatalf("record %d has version %d", i, r.StreamVersion)
		}
	}
}
