package storetest

import (
	"context"
	"iter"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/txhook"
)

// brokenStore is how an event store goes wrong: positions from a sequence
// handed out before commit (naivePositions) and/or expected versions
// checked by reading first and writing later without a constraint
// (checkThenWrite). The suite must catch both.
type brokenStore struct {
	naivePositions bool
	checkThenWrite bool

	mu        sync.Mutex
	writeMu   sync.Mutex
	seq       int64
	committed []flux.Record
}

func (s *brokenStore) Append(ctx context.Context, req flux.AppendRequest) (flux.AppendResult, error) {
	if err := flux.ValidateAppend(&req, 0); err != nil {
		return flux.AppendResult{}, err
	}
	if !s.naivePositions && !s.checkThenWrite {
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
	}
	var res flux.AppendResult
	var recs []flux.Record
	for _, st := range req.Streams {
		actual := s.version(st.StreamID)
		if !st.Expected.Accepts(actual) {
			return flux.AppendResult{}, &flux.ConflictError{StreamID: st.StreamID, Expected: st.Expected, Actual: actual}
		}
		if s.checkThenWrite {
			time.Sleep(time.Millisecond) // the window a real database round trip opens
		}
		for i, e := range st.Events {
			s.mu.Lock()
			s.seq++
			pos := s.seq
			s.mu.Unlock()
			recs = append(recs, flux.Record{Position: pos, StreamID: st.StreamID, StreamVersion: actual + int64(i) + 1,
				AggregateType: st.AggregateType, EventID: e.EventID, EventName: e.EventName, EventVersion: e.EventVersion,
				Payload: e.Payload, Metadata: e.Metadata, OccurredAt: flux.NormalizeTime(e.OccurredAt)})
			res.Positions = append(res.Positions, pos)
		}
		res.Versions = append(res.Versions, actual+int64(len(st.Events)))
	}
	if err := txhook.BeforeCommit(ctx); err != nil {
		return flux.AppendResult{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.checkThenWrite {
		for _, r := range recs {
			if s.versionLocked(r.StreamID) >= r.StreamVersion {
				return flux.AppendResult{}, &flux.ConflictError{StreamID: r.StreamID, Actual: s.versionLocked(r.StreamID)}
			}
		}
	}
	s.committed = append(s.committed, recs...)
	sort.Slice(s.committed, func(i, j int) bool { return s.committed[i].Position < s.committed[j].Position })
	return res, nil
}

func (s *brokenStore) version(id string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.versionLocked(id)
}

func (s *brokenStore) versionLocked(id string) int64 {
	var v int64
	for _, r := range s.committed {
		if r.StreamID == id && r.StreamVersion > v {
			v = r.StreamVersion
		}
	}
	return v
}

func (s *brokenStore) snapshot() []flux.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]flux.Record(nil), s.committed...)
}

func (s *brokenStore) ReadStream(ctx context.Context, id string, o flux.ReadStreamOptions) iter.Seq2[flux.Record, error] {
	return func(yield func(flux.Record, error) bool) {
		recs := s.snapshot()
		sort.Slice(recs, func(i, j int) bool { return recs[i].StreamVersion < recs[j].StreamVersion })
		for _, r := range recs {
			if r.StreamID == id && !yield(r, nil) {
				return
			}
		}
	}
}

func (s *brokenStore) ReadAll(ctx context.Context, o flux.ReadAllOptions) iter.Seq2[flux.Record, error] {
	return func(yield func(flux.Record, error) bool) {
		n := 0
		for _, r := range s.snapshot() {
			if r.Position <= o.After {
				continue
			}
			if o.Limit > 0 && n >= o.Limit {
				return
			}
			n++
			if !yield(r, nil) {
				return
			}
		}
	}
}

func (s *brokenStore) Close() error { return nil }

// TestBrokenBackend runs single cases of the suite against a broken store.
// It only runs when TestSuiteCatchesBrokenStores starts it in a child
// process, because it is meant to fail.
func TestBrokenBackend(t *testing.T) {
	mode := os.Getenv("STORETEST_BROKEN")
	if mode == "" {
		t.Skip("run by TestSuiteCatchesBrokenStores")
	}
	h := Harness{New: func(t *testing.T) flux.EventStore {
		return &brokenStore{naivePositions: mode == "naive-positions", checkThenWrite: mode == "check-then-write"}
	}, Short: true}
	switch mode {
	case "leaky-close":
		checkGoroutines(t)
		testRoundTrip(t, Harness{New: func(t *testing.T) flux.EventStore {
			stop := make(chan struct{}) // never closed: Close forgets its goroutine
			go func() { <-stop }()
			return &brokenStore{}
		}})
	case "naive-positions":
		testHeldTransaction(t, h)
	case "check-then-write":
		testRace(t, h)
	case "naive-subscription":
		testSubscriptionUnderWriters(t, Harness{New: func(t *testing.T) flux.EventStore {
			return &brokenStore{naivePositions: true}
		}, Short: true})
	}
}

func TestSuiteCatchesBrokenStores(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Parallel()
	for mode, want := range map[string]string{
		"naive-positions":    "it was skipped",
		"check-then-write":   "winners, want exactly 1",
		"naive-subscription": "skipped events",
		"leaky-close":        "goroutines started by the suite still run",
	} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestBrokenBackend$", "-test.v")
			cmd.Env = append(os.Environ(), "STORETEST_BROKEN="+mode)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a store with %s:\n%s", mode, out)
			}
			if !strings.Contains(string(out), want) {
				t.Fatalf("the suite failed the %s store for another reason than %q:\n%s", mode, want, out)
			}
		})
	}
}

// TestMissingCapabilitySkips: a store with only the EventStore methods
// (brokenStore has nothing more) skips the cases of every optional
// capability instead of failing them.
func TestMissingCapabilitySkips(t *testing.T) {
	h := Harness{New: func(t *testing.T) flux.EventStore { return &brokenStore{} }, Short: true}
	for name, run := range map[string]func(*testing.T, Harness){
		"snapshots":         testSnapshots,
		"idempotency":       testIdempotency,
		"keys":              testKeys,
		"checkpoints":       testCheckpoints,
		"inspector":         testInspector,
		"backoff":           testBackoffResets,
		"runners share one": testRunnersShareAProjection,
	} {
		var skipped bool
		t.Run(name, func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			run(t, h)
		})
		if !skipped {
			t.Errorf("%s: the case ran against a store without the capability", name)
		}
	}
}
