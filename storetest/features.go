package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

// as returns s as the optional capability T (flux.SnapshotStore,
// pii.KeyStore, ...). A store that does not implement it skips the calling
// case with the reason, in the manner of database/sql's optional driver
// interfaces: the suite holds a backend to what it offers, not to more.
func as[T any](t *testing.T, s flux.EventStore, what string) T {
	t.Helper()
	x, ok := s.(T)
	if !ok {
		t.Skipf("store %T does not implement %s, an optional capability: case skipped", s, what)
	}
	return x
}

func snap(id string, version int64, schema int, data string, at time.Time, keep int) flux.SnapshotWrite {
	return flux.SnapshotWrite{Snapshot: flux.Snapshot{StreamID: id, AggregateType: "Thing", Version: version,
		SchemaVersion: schema, Data: []byte(data), CreatedAt: at}, Keep: keep}
}

func testSnapshots(t *testing.T, h Harness) {
	s := h.New(t)
	ss := as[flux.SnapshotStore](t, s, "flux.SnapshotStore")
	ctx := context.Background()
	load := func(id string, q flux.SnapshotQuery) (flux.Snapshot, bool) {
		t.Helper()
		sn, ok, err := ss.LoadSnapshot(ctx, id, q)
		if err != nil {
			t.Fatalf("load snapshot: %v", err)
		}
		return sn, ok
	}
	if _, ok := load("a", flux.SnapshotQuery{SchemaVersion: 1}); ok {
		t.Fatal("snapshot found in an empty store")
	}

	// Snapshots travel with the events that reach their version, and get
	// the stored time of the event at their version (base+2s), whatever
	// time they were given.
	_, err := s.Append(ctx, flux.AppendRequest{
		Streams:   []flux.StreamAppend{stream("a", flux.NoStream, events(3, "E")...)},
		Snapshots: []flux.SnapshotWrite{snap("a", 3, 1, `{"n":3,"name":"Zoë"}`, base.Add(3*time.Second), 0)},
	})
	if err != nil {
		t.Fatal(err)
	}
	sn, ok := load("a", flux.SnapshotQuery{SchemaVersion: 1})
	if !ok || sn.StreamID != "a" || sn.AggregateType != "Thing" || sn.Version != 3 || sn.SchemaVersion != 1 ||
		!jsonEqual(sn.Data, []byte(`{"n":3,"name":"Zoë"}`)) || !sn.CreatedAt.Equal(base.Add(2*time.Second)) || sn.CreatedAt.Location() != time.UTC {
		t.Fatalf("snapshot = %+v (found %v)", sn, ok)
	}

	// A failed append writes no snapshot.
	_, err = s.Append(ctx, flux.AppendRequest{
		Streams:   []flux.StreamAppend{stream("a", 1, event("E", `{}`, base))},
		Snapshots: []flux.SnapshotWrite{snap("a", 4, 1, `{"n":4}`, base.Add(4*time.Second), 0)},
	})
	wantConflict(t, err, "a", 1, 3)
	if sn, _ := load("a", flux.SnapshotQuery{SchemaVersion: 1}); sn.Version != 3 {
		t.Fatalf("a conflicting append wrote a snapshot at version %d", sn.Version)
	}

	for v := int64(4); v <= 8; v++ {
		schema := 1
		if v >= 7 {
			schema = 2
		}
		_, err := s.Append(ctx, flux.AppendRequest{
			Streams:   []flux.StreamAppend{stream("a", flux.ExpectedVersion(v-1), event("E", `{}`, base.Add(time.Duration(v)*time.Second)))},
			Snapshots: []flux.SnapshotWrite{snap("a", v, schema, fmt.Sprintf(`{"n":%d}`, v), base.Add(time.Duration(v)*time.Second), 0)},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		q    flux.SnapshotQuery
		want int64 // 0: none
	}{
		{"newest of schema 1", flux.SnapshotQuery{SchemaVersion: 1}, 6},
		{"newest of schema 2", flux.SnapshotQuery{SchemaVersion: 2}, 8},
		{"unknown schema", flux.SnapshotQuery{SchemaVersion: 3}, 0},
		{"at or below a version", flux.SnapshotQuery{SchemaVersion: 1, MaxVersion: 5}, 5},
		{"below every snapshot", flux.SnapshotQuery{SchemaVersion: 1, MaxVersion: 2}, 0},
		{"created at or before a time", flux.SnapshotQuery{SchemaVersion: 1, Until: base.Add(4 * time.Second)}, 4},
		{"time and version", flux.SnapshotQuery{SchemaVersion: 2, Until: base.Add(7500 * time.Millisecond), MaxVersion: 8}, 7},
		{"before every snapshot", flux.SnapshotQuery{SchemaVersion: 1, Until: base}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sn, ok := load("a", c.q)
			if c.want == 0 {
				if ok {
					t.Fatalf("found snapshot at version %d, want none", sn.Version)
				}
				return
			}
			if !ok || sn.Version != c.want || !jsonEqual(sn.Data, []byte(fmt.Sprintf(`{"n":%d}`, c.want))) {
				t.Fatalf("snapshot = version %d (found %v), want %d", sn.Version, ok, c.want)
			}
		})
	}

	// Writing a snapshot at an existing version replaces it; Keep prunes.
	_, err = s.Append(ctx, flux.AppendRequest{Snapshots: []flux.SnapshotWrite{snap("a", 8, 2, `{"n":"eight"}`, base.Add(8*time.Second), 2)}})
	if err != nil {
		t.Fatal(err)
	}
	var infos []flux.SnapshotInfo
	for info, err := range ss.ListSnapshots(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, info)
	}
	if len(infos) != 2 || infos[0].Version != 7 || infos[1].Version != 8 || infos[1].SchemaVersion != 2 || infos[1].Size != len(`{"n":"eight"}`) && infos[1].Size < 10 {
		t.Fatalf("after keep=2: %+v", infos)
	}
	if sn, _ := load("a", flux.SnapshotQuery{SchemaVersion: 2}); !jsonEqual(sn.Data, []byte(`{"n":"eight"}`)) {
		t.Fatalf("snapshot at version 8 was not replaced: %s", sn.Data)
	}

	// Prune and delete across streams.
	for _, id := range []string{"b", "c"} {
		for v := int64(1); v <= 3; v++ {
			w := snap(id, v, 1, `{}`, base, 0)
			w.AggregateType = "Other"
			if _, err := s.Append(ctx, flux.AppendRequest{Snapshots: []flux.SnapshotWrite{w}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	n := 0
	for _, err := range ss.ListSnapshots(ctx, "Other") {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 6 {
		t.Fatalf("ListSnapshots(Other) = %d, want 6", n)
	}
	if deleted, err := ss.PruneSnapshots(ctx, 1); err != nil || deleted != 5 {
		t.Fatalf("PruneSnapshots(1) = %d, %v; want 5 deleted", deleted, err)
	}
	if deleted, err := ss.DeleteSnapshots(ctx, "b"); err != nil || deleted != 1 {
		t.Fatalf("DeleteSnapshots(b) = %d, %v; want 1", deleted, err)
	}
	if deleted, err := ss.DeleteSnapshots(ctx, ""); err != nil || deleted != 2 {
		t.Fatalf("DeleteSnapshots(all) = %d, %v; want 2", deleted, err)
	}
	if _, err := ss.PruneSnapshots(ctx, 0); !errors.Is(err, flux.ErrInvalidArgument) {
		t.Fatalf("PruneSnapshots(0): err = %v, want flux.ErrInvalidArgument (keep must be >= 1)", err)
	}
}

func testIdempotency(t *testing.T, h Harness) {
	s := h.New(t)
	is := as[flux.IdempotencyStore](t, s, "flux.IdempotencyStore")
	ctx := context.Background()
	if _, ok, err := is.LookupIdempotency(ctx, "cmd-1"); ok || err != nil {
		t.Fatalf("lookup in empty store = %v, %v", ok, err)
	}
	first := &flux.IdempotencyRecord{Key: "cmd-1", Result: []byte(`{"ok":true}`), CreatedAt: base}
	if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream("x", flux.NoStream, event("E", `{}`, base))}, Idempotency: first}); err != nil {
		t.Fatal(err)
	}
	rec, ok, err := is.LookupIdempotency(ctx, "cmd-1")
	if err != nil || !ok || rec.Key != "cmd-1" || string(rec.Result) != `{"ok":true}` || !rec.CreatedAt.Equal(base) {
		t.Fatalf("lookup = %+v, %v, %v", rec, ok, err)
	}
	// A duplicate writes nothing, and reports the first outcome.
	_, err = s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream("y", flux.NoStream, event("E", `{}`, base))},
		Idempotency: &flux.IdempotencyRecord{Key: "cmd-1", Result: []byte(`{"ok":"second"}`), CreatedAt: base.Add(time.Hour)}})
	var ie *flux.IdempotencyError
	if !errors.Is(err, flux.ErrDuplicateCommand) || !errors.As(err, &ie) || string(ie.Record.Result) != `{"ok":true}` || !ie.Record.CreatedAt.Equal(base) {
		t.Fatalf("duplicate: err = %v", err)
	}
	if recs := readStream(t, s, "y", flux.ReadStreamOptions{}); len(recs) != 0 {
		t.Fatal("a duplicate command's events were written")
	}
	// A key alone (a command that raised nothing) is recorded too.
	if _, err := s.Append(ctx, flux.AppendRequest{Idempotency: &flux.IdempotencyRecord{Key: "cmd-2", Result: []byte(`null`), CreatedAt: base}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := is.LookupIdempotency(ctx, "cmd-2"); !ok {
		t.Fatal("key-only append was not recorded")
	}
	// A conflicting append does not record its key.
	_, err = s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream("x", flux.NoStream, event("E", `{}`, base))},
		Idempotency: &flux.IdempotencyRecord{Key: "cmd-3", Result: []byte(`1`), CreatedAt: base}})
	wantConflict(t, err, "x", flux.NoStream, 1)
	if _, ok, _ := is.LookupIdempotency(ctx, "cmd-3"); ok {
		t.Fatal("a failed append recorded its idempotency key")
	}
	// Concurrent first uses of one key: exactly one wins.
	var wg sync.WaitGroup
	results := make([]error, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = s.Append(ctx, flux.AppendRequest{
				Streams:     []flux.StreamAppend{stream(fmt.Sprintf("z%d", i), flux.NoStream, event("E", `{}`, base))},
				Idempotency: &flux.IdempotencyRecord{Key: "cmd-race", Result: []byte(fmt.Sprint(i)), CreatedAt: base},
			})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range results {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, flux.ErrDuplicateCommand):
			t.Fatalf("concurrent duplicate: err = %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d appends with the same idempotency key succeeded, want 1", wins)
	}
	n := 0
	for _, err := range s.ReadAll(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("log holds %d events, want 2 (x and one z)", n)
	}
}

func testKeys(t *testing.T, h Harness) {
	s := h.New(t)
	ks := as[pii.KeyStore](t, s, "pii.KeyStore")
	ctx := context.Background()
	if _, err := ks.LoadKey(ctx, "alice"); !errors.Is(err, pii.ErrKeyNotFound) {
		t.Fatalf("load missing key: err = %v", err)
	}
	k, err := ks.CreateKey(ctx, pii.StoredKey{Subject: "alice", Wrapped: "v1:wrapped-a", CreatedAt: base, UpdatedAt: base})
	if err != nil || k.Wrapped != "v1:wrapped-a" || k.Subject != "alice" {
		t.Fatalf("create = %+v, %v", k, err)
	}
	// A second create returns the stored key, not the new one.
	k, err = ks.CreateKey(ctx, pii.StoredKey{Subject: "alice", Wrapped: "v1:other", CreatedAt: base, UpdatedAt: base})
	if err != nil || k.Wrapped != "v1:wrapped-a" {
		t.Fatalf("second create = %+v, %v; want the first key", k, err)
	}
	got, err := ks.LoadKey(ctx, "alice")
	if err != nil || got.Wrapped != "v1:wrapped-a" || !got.CreatedAt.Equal(base) {
		t.Fatalf("load = %+v, %v", got, err)
	}

	// Concurrent first uses: every caller gets the one stored key.
	var wg sync.WaitGroup
	keys := make([]string, 16)
	errs := make([]error, 16)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := ks.CreateKey(ctx, pii.StoredKey{Subject: "bob", Wrapped: fmt.Sprintf("v1:bob-%d", i), CreatedAt: base, UpdatedAt: base})
			keys[i], errs[i] = k.Wrapped, err
		}()
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil || keys[i] != keys[0] {
			t.Fatalf("concurrent create %d = %q, %v; caller 0 got %q", i, keys[i], errs[i], keys[0])
		}
	}

	// Forgetting deletes the key, leaves a tombstone, and refuses new keys.
	f := pii.Forgetting{Subject: "alice", At: base.Add(time.Hour), By: "dpo@example.com", Reason: "request 17"}
	if err := ks.ForgetSubject(ctx, f); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.LoadKey(ctx, "alice"); !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("load forgotten key: err = %v", err)
	}
	if _, err := ks.CreateKey(ctx, pii.StoredKey{Subject: "alice", Wrapped: "v1:again", CreatedAt: base, UpdatedAt: base}); !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("create key for forgotten subject: err = %v", err)
	}
	rec, ok, err := ks.Forgotten(ctx, "alice")
	if err != nil || !ok || rec.By != "dpo@example.com" || rec.Reason != "request 17" || !rec.At.Equal(f.At) {
		t.Fatalf("forgotten = %+v, %v, %v", rec, ok, err)
	}
	if err := ks.ForgetSubject(ctx, pii.Forgetting{Subject: "alice", At: base.Add(2 * time.Hour), By: "someone else"}); err != nil {
		t.Fatalf("forget twice: %v", err)
	}
	if rec, _, _ := ks.Forgotten(ctx, "alice"); rec.By != "dpo@example.com" {
		t.Fatalf("forgetting twice replaced the first record: %+v", rec)
	}
	if _, ok, _ := ks.Forgotten(ctx, "bob"); ok {
		t.Fatal("bob reported forgotten")
	}
	// A subject that never had a key can be forgotten too (pre-emptively).
	if err := ks.ForgetSubject(ctx, pii.Forgetting{Subject: "carol", At: base, By: "ops"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.CreateKey(ctx, pii.StoredKey{Subject: "carol", Wrapped: "v1:c", CreatedAt: base, UpdatedAt: base}); !errors.Is(err, pii.ErrForgotten) {
		t.Fatalf("create key for pre-emptively forgotten subject: err = %v", err)
	}

	// Rewrap is all or nothing.
	if _, err := ks.CreateKey(ctx, pii.StoredKey{Subject: "dave", Wrapped: "v1:dave", CreatedAt: base, UpdatedAt: base}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	_, err = ks.RewrapKeys(ctx, func(k pii.StoredKey) (pii.StoredKey, error) {
		if k.Subject == "dave" {
			return k, boom
		}
		k.Wrapped = "v2:" + k.Wrapped
		return k, nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("failing rewrap: err = %v", err)
	}
	if k, _ := ks.LoadKey(ctx, "bob"); k.Wrapped != keys[0] {
		t.Fatalf("a failed rewrap changed bob's key to %q", k.Wrapped)
	}
	n, err := ks.RewrapKeys(ctx, func(k pii.StoredKey) (pii.StoredKey, error) {
		k.Wrapped = "v2:" + k.Wrapped
		k.UpdatedAt = base.Add(time.Minute)
		return k, nil
	})
	if err != nil || n != 2 {
		t.Fatalf("rewrap = %d, %v; want 2 keys (bob, dave)", n, err)
	}
	if k, _ := ks.LoadKey(ctx, "dave"); k.Wrapped != "v2:v1:dave" || !k.UpdatedAt.Equal(base.Add(time.Minute)) || !k.CreatedAt.Equal(base) {
		t.Fatalf("rewrapped key = %+v", k)
	}
}

func testCheckpoints(t *testing.T, h Harness) {
	s := h.New(t)
	cs := as[projection.CheckpointStore](t, s, "projection.CheckpointStore")
	ctx := context.Background()
	cp, err := cs.LoadCheckpoint(ctx, "balances")
	if err != nil || cp.Position != 0 || cp.Name != "balances" {
		t.Fatalf("missing checkpoint = %+v, %v", cp, err)
	}
	for _, m := range [][2]int64{{0, 10}, {10, 25}} {
		from, p := m[0], m[1]
		if err := cs.SaveCheckpoint(ctx, projection.Checkpoint{Name: "balances", Position: p, Supersedes: from, UpdatedAt: base.Add(time.Duration(p) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs.SaveCheckpoint(ctx, projection.Checkpoint{Name: "audit", Position: 3, UpdatedAt: base}); err != nil {
		t.Fatal(err)
	}
	cp, err = cs.LoadCheckpoint(ctx, "balances")
	if err != nil || cp.Position != 25 || !cp.UpdatedAt.Equal(base.Add(25*time.Second)) {
		t.Fatalf("checkpoint = %+v, %v", cp, err)
	}
	all, err := cs.ListCheckpoints(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "audit" || all[1].Name != "balances" || all[1].Position != 25 {
		t.Fatalf("list = %+v, %v", all, err)
	}
	if err := cs.DeleteCheckpoint(ctx, "balances"); err != nil {
		t.Fatal(err)
	}
	if cp, _ := cs.LoadCheckpoint(ctx, "balances"); cp.Position != 0 {
		t.Fatalf("deleted checkpoint at %d", cp.Position)
	}
	if err := cs.DeleteCheckpoint(ctx, "never-existed"); err != nil {
		t.Fatalf("delete missing checkpoint: %v", err)
	}
}

func testInspector(t *testing.T, h Harness) {
	s := h.New(t)
	in := as[flux.Inspector](t, s, "flux.Inspector")
	ctx := context.Background()
	if head, err := in.Head(ctx); err != nil || head != 0 {
		t.Fatalf("head of empty store = %d, %v", head, err)
	}
	mk := func(id, typ string, n int, at time.Time) flux.StreamAppend {
		evs := make([]flux.EventData, n)
		for i := range evs {
			evs[i] = event("E", `{}`, at.Add(time.Duration(i)*time.Minute))
		}
		return flux.StreamAppend{StreamID: id, AggregateType: typ, Expected: flux.NoStream, Events: evs}
	}
	mustAppend(t, s, mk("u2", "User", 2, base), mk("e1", "Envelope", 3, base.Add(time.Hour)))
	mustAppend(t, s, mk("u1", "User", 1, base.Add(2*time.Hour)))
	// A rolled-back append leaves no hole in the positions.
	_, _ = s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{mk("u1", "User", 1, base)}})
	mustAppend(t, s, mk("u3", "User", 1, base))
	head, err := in.Head(ctx)
	if err != nil || head != 7 {
		t.Fatalf("head = %d, %v; want 7 (positions must be dense)", head, err)
	}
	equal(t, "positions", positions(readAll(t, s, flux.ReadAllOptions{})), []int64{1, 2, 3, 4, 5, 6, 7})

	list := func(o flux.ListStreamsOptions) []flux.StreamInfo {
		var out []flux.StreamInfo
		for si, err := range in.ListStreams(ctx, o) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, si)
		}
		return out
	}
	all := list(flux.ListStreamsOptions{})
	if len(all) != 4 {
		t.Fatalf("streams = %+v", all)
	}
	e1 := all[0]
	if e1.StreamID != "e1" || e1.AggregateType != "Envelope" || e1.Version != 3 ||
		!e1.FirstEventAt.Equal(base.Add(time.Hour)) || !e1.LastEventAt.Equal(base.Add(time.Hour+2*time.Minute)) {
		t.Fatalf("stream e1 = %+v", e1)
	}
	ids := func(xs []flux.StreamInfo) []string {
		out := make([]string, len(xs))
		for i, x := range xs {
			out[i] = x.StreamID
		}
		return out
	}
	equal(t, "all streams", ids(all), []string{"e1", "u1", "u2", "u3"})
	equal(t, "users", ids(list(flux.ListStreamsOptions{AggregateType: "User"})), []string{"u1", "u2", "u3"})
	equal(t, "page", ids(list(flux.ListStreamsOptions{After: "u1", Limit: 1})), []string{"u2"})
}
