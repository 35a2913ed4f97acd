package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/storetest/faultproxy"
)

// FaultHarness describes a server backend for RunFaults.
type FaultHarness struct {
	// Target is the database server's host:port. Required.
	Target string

	// Open returns a new, empty store (isolated as Harness.New) whose
	// connections go to addr, a proxy in front of Target, and registers
	// its cleanup with t.Cleanup. Required.
	Open func(t *testing.T, addr string) flux.EventStore

	// CommitPattern is the bytes the backend's COMMIT statement puts on
	// the wire (for PostgreSQL's simple protocol "Q\x00\x00\x00\x0bCOMMIT\x00").
	// Empty: the COMMIT cases are skipped.
	CommitPattern []byte
}

// RunFaults runs the store between itself and its server through a
// faultproxy.Proxy and checks what the storage contract promises under
// connection faults:
//
//   - every read recovers transparently from pooled connections the
//     server (or a proxy, a failover) has reset;
//   - during an outage under load every error matches
//     flux.ErrStoreUnavailable, no acknowledged event is lost, the log stays
//     dense, and appends succeed again once the server is back, without
//     repair;
//   - an append whose COMMIT loses its connection reports success when the
//     server committed and an error when it did not, and retrying it with
//     its idempotency key leaves exactly one copy.
func RunFaults(t *testing.T, h FaultHarness) {
	t.Helper()
	if h.Target == "" || h.Open == nil {
		t.Fatal("storetest: FaultHarness.Target and Open are required")
	}
	start := func(t *testing.T) (*faultproxy.Proxy, flux.EventStore) {
		p, err := faultproxy.Start(h.Target)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() }) // after the store closes (cleanups run last-in first-out)
		return p, h.Open(t, p.Addr())
	}
	t.Run("reads recover from connections the server reset", func(t *testing.T) {
		t.Parallel()
		p, s := start(t)
		testReadsAfterReset(t, p, s)
	})
	t.Run("an outage under load loses no acknowledged event", func(t *testing.T) {
		t.Parallel()
		p, s := start(t)
		testOutage(t, p, s)
	})
	t.Run("a COMMIT that loses its connection", func(t *testing.T) {
		if len(h.CommitPattern) == 0 {
			t.Skip("FaultHarness.CommitPattern is not set")
		}
		t.Parallel()
		p, s := start(t)
		testCommitCut(t, p, s, h.CommitPattern)
	})
}

func testReadsAfterReset(t *testing.T, p *faultproxy.Proxy, s flux.EventStore) {
	ctx := t.Context()
	key := &flux.IdempotencyRecord{Key: "cmd-1", Result: []byte(`{}`), CreatedAt: base}
	req := flux.AppendRequest{
		Streams:     []flux.StreamAppend{stream("s1", flux.NoStream, event("E", `{}`, base))},
		Idempotency: key,
	}
	if _, ok := s.(flux.SnapshotStore); ok {
		req.Snapshots = []flux.SnapshotWrite{{Snapshot: flux.Snapshot{StreamID: "s1", AggregateType: "Thing", Version: 1, SchemaVersion: 1, Data: []byte(`{}`), CreatedAt: base}}}
	}
	if _, err := s.Append(ctx, req); err != nil {
		t.Fatal(err)
	}
	type op struct {
		name string
		run  func(ctx context.Context) error
	}
	ops := []op{
		{"Append", func(ctx context.Context) error {
			_, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream("s2", flux.Any, event("E", `{}`, base))}})
			return err
		}},
		{"ReadStream", func(ctx context.Context) error {
			for _, err := range s.ReadStream(ctx, "s1", flux.ReadStreamOptions{}) {
				if err != nil {
					return err
				}
			}
			return nil
		}},
		{"ReadAll", func(ctx context.Context) error {
			for _, err := range s.ReadAll(ctx, flux.ReadAllOptions{}) {
				if err != nil {
					return err
				}
			}
			return nil
		}},
	}
	if in, ok := s.(flux.Inspector); ok {
		ops = append(ops,
			op{"Head", func(ctx context.Context) error { _, err := in.Head(ctx); return err }},
			op{"ListStreams", func(ctx context.Context) error {
				for _, err := range in.ListStreams(ctx, flux.ListStreamsOptions{}) {
					if err != nil {
						return err
					}
				}
				return nil
			}})
	}
	if is, ok := s.(flux.IdempotencyStore); ok {
		ops = append(ops, op{"LookupIdempotency", func(ctx context.Context) error {
			_, found, err := is.LookupIdempotency(ctx, key.Key)
			if err == nil && !found {
				return errors.New("the key is missing")
			}
			return err
		}})
	}
	if ss, ok := s.(flux.SnapshotStore); ok {
		ops = append(ops, op{"LoadSnapshot", func(ctx context.Context) error {
			_, found, err := ss.LoadSnapshot(ctx, "s1", flux.SnapshotQuery{SchemaVersion: 1})
			if err == nil && !found {
				return errors.New("the snapshot is missing")
			}
			return err
		}})
	}
	if ks, ok := s.(pii.KeyStore); ok {
		ops = append(ops, op{"LoadKey", func(ctx context.Context) error {
			if _, err := ks.LoadKey(ctx, "nobody"); !errors.Is(err, pii.ErrKeyNotFound) {
				return err
			}
			return nil
		}})
	}
	if cs, ok := s.(projection.CheckpointStore); ok {
		ops = append(ops, op{"LoadCheckpoint", func(ctx context.Context) error { _, err := cs.LoadCheckpoint(ctx, "p"); return err }})
	}
	for _, o := range ops {
		// Fill the pool with idle connections, then reset them all.
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range s.ReadAll(ctx, flux.ReadAllOptions{}) {
				}
			}()
		}
		wg.Wait()
		p.ResetAll()
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := o.run(octx)
		cancel()
		if err != nil {
			t.Errorf("%s after the server reset the pooled connections: %v", o.name, err)
		}
	}
}

func testOutage(t *testing.T, p *faultproxy.Proxy, s flux.EventStore) {
	const writers, per = 4, 40
	var (
		acked     sync.Map // event ID -> struct{}
		failures  atomic.Int64
		down      atomic.Bool
		recovered [writers]atomic.Bool
		mu        sync.Mutex
		untyped   []error
		wg        sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per || !recovered[w].Load(); i++ {
				if i > 10*per {
					return // reported below as not recovered
				}
				e := event("E", fmt.Sprintf(`{"w":%d,"i":%d}`, w, i), base)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				wasDown := down.Load()
				_, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream(fmt.Sprintf("w%d", w), flux.Any, e)}})
				cancel()
				switch {
				case err == nil:
					acked.Store(e.EventID, struct{}{})
					if !wasDown && !down.Load() && failures.Load() > 0 {
						recovered[w].Store(true)
					}
				case errors.Is(err, flux.ErrStoreUnavailable):
					failures.Add(1)
				default:
					mu.Lock()
					untyped = append(untyped, err)
					mu.Unlock()
					failures.Add(1)
				}
			}
		}()
	}
	// The outage: every connection is reset and new ones are refused,
	// until each writer has failed at least once (or 10 s have passed).
	down.Store(true)
	p.Refuse(true)
	p.ResetAll()
	deadline := time.Now().Add(10 * time.Second)
	for failures.Load() < writers && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	p.Refuse(false)
	down.Store(false)
	wg.Wait()

	for _, err := range untyped {
		t.Errorf("an append during the outage failed with an error matching no sentinel: %v", err)
	}
	if failures.Load() == 0 {
		t.Fatal("no append failed: the outage did not happen")
	}
	for w := range writers {
		if !recovered[w].Load() {
			t.Errorf("writer %d never appended again after the outage", w)
		}
	}
	got := map[string]int{}
	var last int64
	for r, err := range s.ReadAll(t.Context(), flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatalf("read after the outage: %v", err)
		}
		if r.Position != last+1 {
			t.Fatalf("position %d follows %d: the log has a hole or repeats after the outage", r.Position, last)
		}
		last = r.Position
		got[r.EventID]++
	}
	lost := 0
	acked.Range(func(id, _ any) bool {
		if got[id.(string)] != 1 {
			lost++
		}
		return true
	})
	if lost > 0 {
		t.Fatalf("%d acknowledged events are not stored exactly once", lost)
	}
	t.Logf("outage: %d failed appends, all typed; %d events stored", failures.Load(), len(got))
}

func testCommitCut(t *testing.T, p *faultproxy.Proxy, s flux.EventStore, pattern []byte) {
	ctx := t.Context()
	for i, forward := range []bool{true, false} {
		id := fmt.Sprintf("cut-%d", i)
		req := flux.AppendRequest{
			Streams:     []flux.StreamAppend{stream(id, flux.NoStream, event("E", `{}`, base))},
			Idempotency: &flux.IdempotencyRecord{Key: "key-" + id, Result: []byte(`{}`), CreatedAt: base},
		}
		fired := p.CutOn(pattern, forward)
		_, err := s.Append(ctx, req)
		select {
		case <-fired:
		default:
			p.Disarm()
			t.Fatalf("the COMMIT pattern %q never crossed the proxy", pattern)
		}
		switch {
		case forward && err != nil:
			t.Errorf("the server committed, but the append returned %v", err)
		case !forward && !errors.Is(err, flux.ErrStoreUnavailable):
			t.Errorf("the COMMIT never reached the server, but the append returned %v; want flux.ErrStoreUnavailable", err)
		}
		// The caller retries with the same idempotency key: either it is
		// a duplicate (first try committed) or it commits now.
		_, err = s.Append(ctx, req)
		switch {
		case forward && !errors.Is(err, flux.ErrDuplicateCommand):
			t.Errorf("retry of a committed append: %v, want flux.ErrDuplicateCommand", err)
		case !forward && err != nil:
			t.Errorf("retry of an append that never committed: %v", err)
		}
		if n := len(readStream(t, s, id, flux.ReadStreamOptions{})); n != 1 {
			t.Errorf("COMMIT cut (forwarded %v), then a retry with the idempotency key: the stream holds %d copies, want 1", forward, n)
		}
	}
}
