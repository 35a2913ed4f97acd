package flux_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
)

// Counter is a snapshottable aggregate with enough state (a sum, a bounded
// history, a map) that a wrong restore shows.
type Counter struct {
	flux.Root
	Sum    int            `json:"sum"`
	Last   []int          `json:"last"`
	ByTag  map[string]int `json:"byTag"`
	Closed bool           `json:"closed"`

	failRestore bool
}

type Added struct {
	N   int    `json:"n"`
	Tag string `json:"tag"`
}

type Reset struct{}

func (c *Counter) Apply(e any) {
	switch e := e.(type) {
	case Added:
		c.Sum += e.N
		c.Last = append(c.Last, e.N)
		if len(c.Last) > 3 {
			c.Last = c.Last[1:]
		}
		if c.ByTag == nil {
			c.ByTag = map[string]int{}
		}
		c.ByTag[e.Tag] += e.N
	case Reset:
		c.Sum, c.Last, c.ByTag = 0, nil, nil
	}
}

func (c *Counter) SnapshotState() any { return c }

func (c *Counter) RestoreSnapshot(decode func(any) error) error {
	if c.failRestore {
		return errors.New("state shape changed")
	}
	return decode(c)
}

func counterRegistry(t testing.TB, policy *flux.SnapshotPolicy, failRestore bool) *flux.Registry {
	t.Helper()
	opts := []flux.AggregateOption{
		flux.EventType[Added]("Added", 1),
		flux.EventType[Reset]("Reset", 1),
	}
	if policy != nil {
		opts = append(opts, flux.Snapshots(*policy))
	}
	reg, err := flux.NewRegistry(flux.AggregateType("Counter", func() *Counter { return &Counter{failRestore: failRestore} }, opts...))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func repoWith(t testing.TB, store flux.EventStore, reg *flux.Registry, clock func() time.Time) *flux.Repository {
	t.Helper()
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

func snapshotVersions(t testing.TB, store *memstore.Store, id string) []int64 {
	t.Helper()
	var vs []int64
	for info, err := range store.ListSnapshots(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		if info.StreamID == id {
			vs = append(vs, info.Version)
		}
	}
	return vs
}

func TestSnapshotsAreTakenAndUsed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memstore.New()
	repo := repoWith(t, store, counterRegistry(t, &flux.SnapshotPolicy{Every: 5, Keep: 2}, false), nil)
	c := new(Counter)
	c.SetID("c1")
	for i := 1; i <= 23; i++ {
		flux.Raise(c, Added{N: i, Tag: fmt.Sprint(i % 3)})
		if i%3 == 0 || i == 23 {
			if err := repo.Save(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Saves at versions 3, 6, 9, 12, 15, 18, 21, 23: a snapshot is due once
	// 5 events passed since the last: 6, 12, 18, 23; keep the newest 2.
	if got := snapshotVersions(t, store, "c1"); !reflect.DeepEqual(got, []int64{18, 23}) {
		t.Fatalf("snapshots at %v, want [18 23]", got)
	}
	loaded, err := flux.Load[*Counter](ctx, repo, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if info := loaded.LoadInfo(); info.SnapshotVersion != 23 || info.EventsReplayed != 0 {
		t.Fatalf("load info = %+v, want snapshot 23 and nothing replayed", info)
	}
	if loaded.Sum != 276 || loaded.Version() != 23 || !reflect.DeepEqual(loaded.Last, []int{21, 22, 23}) {
		t.Fatalf("loaded = sum %d v%d last %v", loaded.Sum, loaded.Version(), loaded.Last)
	}
	v20, err := flux.LoadVersion[*Counter](ctx, repo, "c1", 20)
	if err != nil || v20.LoadInfo().SnapshotVersion != 18 || v20.LoadInfo().EventsReplayed != 2 || v20.Sum != 210 {
		t.Fatalf("LoadVersion(20) = sum %d, info %+v, %v", v20.Sum, v20.LoadInfo(), err)
	}
	if _, err := flux.LoadVersion[*Counter](ctx, repo, "c1", 24); !errors.Is(err, flux.ErrAggregateNotFound) {
		t.Fatalf("LoadVersion beyond the stream: err = %v", err)
	}
}

func TestSnapshotIsWrittenInTheSaveTransaction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memstore.New()
	repo := repoWith(t, store, counterRegistry(t, &flux.SnapshotPolicy{Every: 2}, false), nil)
	c := new(Counter)
	c.SetID("c1")
	flux.Raise(c, Added{N: 1})
	if err := repo.Save(ctx, c); err != nil {
		t.Fatal(err)
	}
	stale, _ := flux.Load[*Counter](ctx, repo, "c1")
	flux.Raise(c, Added{N: 2})
	if err := repo.Save(ctx, c); err != nil {
		t.Fatal(err)
	}
	flux.Raise(stale, Added{N: 3})
	flux.Raise(stale, Added{N: 4})
	if err := repo.Save(ctx, stale); !errors.Is(err, flux.ErrConcurrencyConflict) {
		t.Fatalf("stale save: err = %v", err)
	}
	if got := snapshotVersions(t, store, "c1"); !reflect.DeepEqual(got, []int64{2}) {
		t.Fatalf("snapshots at %v after a conflicting save, want [2]", got)
	}
}

func TestSnapshotOfAnOlderSchemaIsIgnoredAndReplaced(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memstore.New()
	v1 := repoWith(t, store, counterRegistry(t, &flux.SnapshotPolicy{Every: 3, Keep: 5, Schema: 1}, false), nil)
	c := new(Counter)
	c.SetID("c1")
	for i := 0; i < 4; i++ {
		flux.Raise(c, Added{N: 1})
	}
	if err := v1.Save(ctx, c); err != nil {
		t.Fatal(err)
	}
	v2 := repoWith(t, store, counterRegistry(t, &flux.SnapshotPolicy{Every: 3, Keep: 5, Schema: 2}, false), nil)
	c2, err := flux.Load[*Counter](ctx, v2, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if info := c2.LoadInfo(); info.SnapshotVersion != 0 || info.EventsReplayed != 4 {
		t.Fatalf("schema 2 load used a schema 1 snapshot: %+v", info)
	}
	flux.Raise(c2, Added{N: 1})
	if err := v2.Save(ctx, c2); err != nil {
		t.Fatal(err)
	}
	var schemas []int
	for info, err := range store.ListSnapshots(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		schemas = append(schemas, info.SchemaVersion)
	}
	if !reflect.DeepEqual(schemas, []int{1, 2}) {
		t.Fatalf("snapshot schemas = %v, want a schema 2 snapshot written on the next save", schemas)
	}
	c3, _ := flux.Load[*Counter](ctx, v2, "c1")
	if info := c3.LoadInfo(); info.SnapshotVersion != 5 {
		t.Fatalf("schema 2 load info = %+v, want its own snapshot at 5", info)
	}
}

func TestLoadAtUsesOnlyEarlierSnapshots(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	start := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	store := memstore.New()
	repo := repoWith(t, store, counterRegistry(t, &flux.SnapshotPolicy{Every: 2, Keep: 10}, false), steppingClock(start))
	c := new(Counter)
	c.SetID("c1")
	for i := 1; i <= 6; i++ { // one save per hour: versions 1..6 at 00:00..05:00
		flux.Raise(c, Added{N: i})
		if err := repo.Save(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	at := start.Add(3*time.Hour + 30*time.Minute) // after version 4, before 5
	got, err := flux.LoadAt[*Counter](ctx, repo, "c1", at)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version() != 4 || got.Sum != 10 || got.LoadInfo().SnapshotVersion != 4 {
		t.Fatalf("LoadAt = v%d sum %d info %+v, want v4 sum 10 from the snapshot at 4", got.Version(), got.Sum, got.LoadInfo())
	}
	early, err := flux.LoadAt[*Counter](ctx, repo, "c1", start.Add(90*time.Minute))
	if err != nil || early.Version() != 2 || early.LoadInfo().SnapshotVersion != 2 {
		t.Fatalf("LoadAt(01:30) = v%d info %+v, %v", early.Version(), early.LoadInfo(), err)
	}
}

func TestUnrestorableSnapshotFallsBackToReplay(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memstore.New()
	good := repoWith(t, store, counterRegistry(t, &flux.SnapshotPolicy{Every: 2}, false), nil)
	c := new(Counter)
	c.SetID("c1")
	for i := 0; i < 3; i++ {
		flux.Raise(c, Added{N: 2})
	}
	if err := good.Save(ctx, c); err != nil {
		t.Fatal(err)
	}
	bad := repoWith(t, store, counterRegistry(t, &flux.SnapshotPolicy{Every: 2}, true), nil)
	got, err := flux.Load[*Counter](ctx, bad, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if info := got.LoadInfo(); !info.SnapshotRejected || info.SnapshotVersion != 0 || info.EventsReplayed != 3 || got.Sum != 6 {
		t.Fatalf("fallback: sum %d info %+v", got.Sum, info)
	}
}

func TestSnapshotRegistrationErrors(t *testing.T) {
	t.Parallel()
	_, err := flux.NewRegistry(flux.AggregateType("User", func() *User { return new(User) }, flux.Snapshots(flux.SnapshotPolicy{Every: 10})))
	if !errors.Is(err, flux.ErrInvalidRegistry) || !strings.Contains(err.Error(), "does not implement flux.Snapshotter") {
		t.Fatalf("policy on a non-snapshotter: err = %v", err)
	}
	_, err = flux.NewRegistry(flux.AggregateType("Counter", func() *Counter { return new(Counter) }, flux.Snapshots(flux.SnapshotPolicy{Every: -1})))
	if !errors.Is(err, flux.ErrInvalidRegistry) {
		t.Fatalf("negative policy: err = %v", err)
	}
	reg := counterRegistry(t, nil, false)
	if p, ok := reg.SnapshotPolicyOf("Counter"); !ok || p.Every != 50 || p.Keep != 2 || p.Schema != 1 {
		t.Fatalf("default policy = %+v, %v", p, ok)
	}
	off := counterRegistry(t, &flux.SnapshotPolicy{Disabled: true}, false)
	if _, ok := off.SnapshotPolicyOf("Counter"); ok {
		t.Fatal("disabled policy reported as enabled")
	}
	_, err = flux.NewRepository(flux.Config{Store: appendOnly{memstore.New()}, Registry: reg})
	if err == nil || !strings.Contains(err.Error(), "does not implement flux.SnapshotStore") {
		t.Fatalf("snapshots on a store without them: err = %v", err)
	}
}

// appendOnly hides every optional interface of a store.
type appendOnly struct{ flux.EventStore }

// TestSnapshotPlusTailEqualsFullReplay is the property test: for many random
// histories and snapshot frequencies, the state rebuilt from a snapshot and
// the events after it equals the state from replaying every event, at
// every version.
func TestSnapshotPlusTailEqualsFullReplay(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rounds := 60
	if testing.Short() {
		rounds = 15
	}
	for round := 0; round < rounds; round++ {
		rng := rand.New(rand.NewPCG(uint64(round), 7))
		store := memstore.New()
		every := 1 + rng.IntN(8)
		keep := 1 + rng.IntN(4)
		snap := repoWith(t, store, counterRegistry(t, &flux.SnapshotPolicy{Every: every, Keep: keep}, false), nil)
		full := repoWith(t, store, counterRegistry(t, &flux.SnapshotPolicy{Disabled: true}, false), nil)
		id := fmt.Sprintf("c%d", round)
		c := new(Counter)
		c.SetID(id)
		n := 1 + rng.IntN(60)
		for i := 0; i < n; i++ {
			if rng.IntN(10) == 0 {
				flux.Raise(c, Reset{})
			} else {
				flux.Raise(c, Added{N: rng.IntN(100) - 20, Tag: string(rune('a' + rng.IntN(4)))})
			}
			if rng.IntN(4) == 0 || i == n-1 {
				if err := snap.Save(ctx, c); err != nil {
					t.Fatal(err)
				}
				// Sometimes continue from a fresh load, as a new request would.
				if rng.IntN(2) == 0 {
					var err error
					if c, err = flux.Load[*Counter](ctx, snap, id); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		for v := int64(1); v <= int64(n); v++ {
			a, err := flux.LoadVersion[*Counter](ctx, snap, id, v)
			if err != nil {
				t.Fatal(err)
			}
			b, err := flux.LoadVersion[*Counter](ctx, full, id, v)
			if err != nil {
				t.Fatal(err)
			}
			if a.Sum != b.Sum || !reflect.DeepEqual(a.Last, b.Last) || !sameTags(a.ByTag, b.ByTag) || a.Version() != b.Version() {
				t.Fatalf("round %d (every %d, keep %d) version %d: snapshot+tail %+v (info %+v) != full replay %+v",
					round, every, keep, v, a, a.LoadInfo(), b)
			}
		}
		latest, _ := flux.Load[*Counter](ctx, snap, id)
		if int64(n) >= int64(every) && latest.LoadInfo().SnapshotVersion == 0 {
			t.Fatalf("round %d: %d events with every=%d but the load used no snapshot", round, n, every)
		}
	}
}

func sameTags(a, b map[string]int) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}
