package flux_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
)

// TestStampTimes: each event gets the later of its time and the time
// stored before it (the log's last, then the append's own), a snapshot the
// time of its stream's last event, and the caller's request is untouched.
func TestStampTimes(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	ev := func(s int) flux.EventData { return flux.EventData{OccurredAt: at(s)} }
	req := flux.AppendRequest{
		Streams: []flux.StreamAppend{
			{StreamID: "a", Events: []flux.EventData{ev(1), ev(5), ev(3)}},
			{StreamID: "b", Events: []flux.EventData{ev(2), ev(9)}},
		},
		Snapshots: []flux.SnapshotWrite{
			{Snapshot: flux.Snapshot{StreamID: "a", CreatedAt: at(0)}},
			{Snapshot: flux.Snapshot{StreamID: "c", CreatedAt: at(7)}}, // no events of c: kept
		},
	}
	orig := req
	got := flux.StampTimes(&req, at(4))
	want := []time.Time{at(4), at(5), at(5), at(5), at(9)}
	if len(got) != len(want) {
		t.Fatalf("times = %v, want %v", got, want)
	}
	k := 0
	for _, st := range req.Streams {
		for _, e := range st.Events {
			if !got[k].Equal(want[k]) || !e.OccurredAt.Equal(want[k]) {
				t.Fatalf("event %d: returned %v, stamped %v, want %v", k, got[k], e.OccurredAt, want[k])
			}
			k++
		}
	}
	if !req.Snapshots[0].CreatedAt.Equal(at(5)) || !req.Snapshots[1].CreatedAt.Equal(at(7)) {
		t.Fatalf("snapshot times %v, %v; want %v (a's last event) and %v (as given)", req.Snapshots[0].CreatedAt, req.Snapshots[1].CreatedAt, at(5), at(7))
	}
	if !orig.Streams[0].Events[0].OccurredAt.Equal(at(1)) || !orig.Snapshots[0].CreatedAt.Equal(at(0)) {
		t.Fatal("StampTimes changed the caller's request")
	}
	// An empty log keeps the given times (a running maximum).
	req = orig
	if got := flux.StampTimes(&req, time.Time{}); !got[0].Equal(at(1)) || !got[2].Equal(at(5)) {
		t.Fatalf("times on an empty log = %v", got)
	}
}

type publisherFunc func(ctx context.Context, events []flux.Envelope) error

func (f publisherFunc) Publish(ctx context.Context, events []flux.Envelope) error {
	return f(ctx, events)
}

// TestSaveBehindTheLogPublishesStoredTimes: a repository whose clock is
// behind the log's last time stores its events at that time, and the
// envelopes it publishes say so.
func TestSaveBehindTheLogPublishesStoredTimes(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := memstore.New()
	reg, err := flux.NewRegistry(flux.AggregateType("Counter", func() *Counter { return new(Counter) },
		flux.EventType[Added]("Added", 1), flux.EventType[Reset]("Reset", 1), flux.Snapshots(flux.SnapshotPolicy{Disabled: true})))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ahead, err := flux.NewRepository(flux.Config{Store: store, Registry: reg, Clock: func() time.Time { return t0.Add(10 * time.Second) }})
	if err != nil {
		t.Fatal(err)
	}
	var published []flux.Envelope
	behind, err := flux.NewRepository(flux.Config{Store: store, Registry: reg, Clock: func() time.Time { return t0 },
		Publisher: publisherFunc(func(_ context.Context, evs []flux.Envelope) error { published = append(published, evs...); return nil })})
	if err != nil {
		t.Fatal(err)
	}
	for i, repo := range []*flux.Repository{ahead, behind} {
		c := new(Counter)
		c.SetID(fmt.Sprint("c", i))
		flux.Raise(c, Added{N: 1})
		if err := repo.Save(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	want := t0.Add(10 * time.Second)
	if len(published) != 1 || !published[0].OccurredAt.Equal(want) {
		t.Fatalf("published %+v, want one event at %v", published, want)
	}
	for rec, err := range store.ReadStream(ctx, "c1", flux.ReadStreamOptions{}) {
		if err != nil || !rec.OccurredAt.Equal(want) {
			t.Fatalf("stored at %v (%v), want %v", rec.OccurredAt, err, want)
		}
	}
}
