package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
)

// clockTicked is the event of the time-order test.
type clockTicked struct {
	Writer int `json:"w"`
}

// clockCounter counts its events; it takes snapshots, so LoadAt's
// snapshot path is exercised.
type clockCounter struct {
	flux.Root
	N int `json:"n"`
}

func (c *clockCounter) Apply(e any) {
	if _, ok := e.(clockTicked); ok {
		c.N++
	}
}

func (c *clockCounter) SnapshotState() any                           { return c }
func (c *clockCounter) RestoreSnapshot(decode func(any) error) error { return decode(c) }

// timeQuery is one question asked of the store: the version of stream at
// time at, as LoadAt (snapshots), Events{Until} and a replay of the stream
// answer it.
type timeQuery struct {
	stream string
	at     time.Time
	answer int64
}

// testTimeOrder: four writers with the real clock and one whose clock is
// 2 s ahead save aggregates of four streams concurrently through
// repositories (each with its own clock, as separate application instances
// have). Stored times must not decrease along the global log or within a
// stream, and 200 LoadAt questions about times before the log's last time,
// asked during and after the run, must get the same answer from every
// path (snapshot, Events, replay) and the same answer when asked again
// after the run.
func testTimeOrder(t *testing.T, h Harness) {
	s := h.New(t)
	policy := flux.SnapshotPolicy{Every: 3, Keep: 2}
	if _, ok := s.(flux.SnapshotStore); !ok {
		policy = flux.SnapshotPolicy{Disabled: true} // an optional capability: the other paths are still checked
	}
	reg, err := flux.NewRegistry(flux.AggregateType("ClockCounter", func() *clockCounter { return new(clockCounter) },
		flux.EventType[clockTicked]("ClockTicked", 1), flux.Snapshots(policy)))
	if err != nil {
		t.Fatal(err)
	}
	const writers = 5 // the last one's clock is 2 s ahead
	repos := make([]*flux.Repository, writers)
	for w := range repos {
		clock := time.Now
		if w == writers-1 {
			clock = func() time.Time { return time.Now().Add(2 * time.Second) }
		}
		if repos[w], err = flux.NewRepository(flux.Config{Store: s, Registry: reg, Clock: clock}); err != nil {
			t.Fatal(err)
		}
	}
	repo := repos[0]
	streams := []string{"clock-0", "clock-1", "clock-2", "clock-3"}
	per := 30
	if h.Short || testing.Short() {
		per = 12
	}
	ctx := context.Background()
	start := time.Now().Add(-time.Second)

	var wg sync.WaitGroup
	startWriters := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 13))
			<-startWriters
			for i := 0; i < per; i++ {
				// Pauses interleave the writers even on a fast store.
				time.Sleep(time.Duration(rng.IntN(400)) * time.Microsecond)
				id := streams[rng.IntN(len(streams))]
				for attempt := 0; ; attempt++ {
					c, err := flux.Load[*clockCounter](ctx, repos[w], id)
					if errors.Is(err, flux.ErrAggregateNotFound) {
						c, err = flux.NewAggregate[*clockCounter](reg, id)
					}
					if err != nil {
						t.Errorf("writer %d: load %s: %v", w, id, err)
						return
					}
					flux.Raise(c, clockTicked{Writer: w})
					err = repos[w].Save(ctx, c)
					if errors.Is(err, flux.ErrConcurrencyConflict) && attempt < 1000 {
						time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
						continue
					}
					if err != nil {
						t.Errorf("writer %d: save %s: %v", w, id, err)
						return
					}
					break
				}
			}
		}()
	}
	close(startWriters)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	// ask answers one question by the three paths, which must agree.
	ask := func(stream string, at time.Time) (int64, error) {
		viaLoad := int64(0)
		c, err := flux.LoadAt[*clockCounter](ctx, repo, stream, at)
		switch {
		case errors.Is(err, flux.ErrAggregateNotFound):
		case err != nil:
			return 0, fmt.Errorf("LoadAt(%s, %v): %w", stream, at, err)
		default:
			viaLoad = c.Version()
			if int64(c.N) != viaLoad {
				return 0, fmt.Errorf("LoadAt(%s, %v) = version %d with %d events applied", stream, at, viaLoad, c.N)
			}
		}
		viaEvents := int64(0)
		for env, err := range repo.Events(ctx, stream, &flux.EventsOptions{Until: at}) {
			if err != nil {
				return 0, err
			}
			viaEvents = env.StreamVersion
		}
		viaReplay := int64(0)
		for rec, err := range s.ReadStream(ctx, stream, flux.ReadStreamOptions{}) {
			if err != nil {
				return 0, err
			}
			if rec.OccurredAt.After(at) {
				break
			}
			viaReplay = rec.StreamVersion
		}
		if viaLoad != viaEvents || viaLoad != viaReplay {
			return 0, fmt.Errorf("stream %s at %v: LoadAt says version %d, Events{Until} %d, a replay %d",
				stream, at.Format(time.RFC3339Nano), viaLoad, viaEvents, viaReplay)
		}
		return viaLoad, nil
	}
	// question picks a stream and a time before the log's last time: no
	// later commit may change the answer.
	rng := rand.New(rand.NewPCG(7, 7))
	question := func() (timeQuery, bool) {
		var last time.Time
		for rec, err := range s.ReadAll(ctx, flux.ReadAllOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			if rec.OccurredAt.After(last) {
				last = rec.OccurredAt
			}
		}
		span := last.Sub(start)
		if span <= 0 {
			return timeQuery{}, false
		}
		at := flux.NormalizeTime(start.Add(time.Duration(rng.Int64N(int64(span)))))
		if !at.Before(last) {
			return timeQuery{}, false
		}
		return timeQuery{stream: streams[rng.IntN(len(streams))], at: at}, true
	}

	const questions = 200
	var asked []timeQuery
	running := true
	for len(asked) < questions {
		if running {
			select {
			case <-done:
				running = false
			default:
			}
		}
		q, ok := question()
		if !ok {
			time.Sleep(time.Millisecond)
			continue
		}
		answer, err := ask(q.stream, q.at)
		if err != nil {
			t.Fatal(err)
		}
		q.answer = answer
		asked = append(asked, q)
		if running && len(asked) == questions/2 {
			<-done // the second half is asked after the run
			running = false
		}
	}
	<-done
	if t.Failed() {
		return
	}

	// Time order is log order, globally and per stream.
	var prev time.Time
	perStream := map[string]time.Time{}
	n := 0
	for rec, err := range s.ReadAll(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if rec.OccurredAt.Before(prev) {
			t.Errorf("position %d (%s v%d) occurred at %v, before position %d's %v",
				rec.Position, rec.StreamID, rec.StreamVersion, rec.OccurredAt.Format(time.RFC3339Nano), rec.Position-1, prev.Format(time.RFC3339Nano))
		}
		if p := perStream[rec.StreamID]; rec.OccurredAt.Before(p) {
			t.Errorf("stream %s version %d occurred at %v, before version %d's %v",
				rec.StreamID, rec.StreamVersion, rec.OccurredAt.Format(time.RFC3339Nano), rec.StreamVersion-1, p.Format(time.RFC3339Nano))
		}
		prev, perStream[rec.StreamID] = rec.OccurredAt, rec.OccurredAt
	}
	if n != writers*per {
		t.Fatalf("log has %d events, want %d", n, writers*per)
	}

	// Every answer stands.
	changed := 0
	for _, q := range asked {
		answer, err := ask(q.stream, q.at)
		if err != nil {
			t.Fatal(err)
		}
		if answer != q.answer {
			changed++
			if changed <= 5 {
				t.Errorf("stream %s at %v: version %d, later %d", q.stream, q.at.Format(time.RFC3339Nano), q.answer, answer)
			}
		}
	}
	if changed > 0 {
		t.Errorf("%d of %d LoadAt answers changed after later commits", changed, len(asked))
	}
}

// testStoredTimes: an event given a time earlier than the log's last is
// stored at the log's last time, for every kind of expectation; the
// append's result reports the stored times, and a snapshot gets the time
// of the event at its version.
func testStoredTimes(t *testing.T, h Harness) {
	s := h.New(t)
	ctx := context.Background()
	res := mustAppend(t, s, stream("ahead", flux.NoStream, event("E", `{}`, base.Add(10*time.Second))))
	if len(res.OccurredAt) != 1 || !res.OccurredAt[0].Equal(base.Add(10*time.Second)) {
		t.Fatalf("result times %v, want [%v]", res.OccurredAt, base.Add(10*time.Second))
	}
	last := base.Add(10 * time.Second) // the log's last time
	for i, c := range []struct {
		id  string
		exp flux.ExpectedVersion
		n   int
	}{{"behind-new", flux.NoStream, 1}, {"behind-new-2", flux.NoStream, 3}, {"ahead", 1, 1}, {"ahead", 2, 2}, {"ahead", flux.Any, 1}, {"ahead", flux.StreamExists, 1}} {
		evs := make([]flux.EventData, c.n)
		for j := range evs {
			evs[j] = event("E", `{}`, base.Add(time.Duration(j)*time.Second)) // behind the log
		}
		if i == 3 {
			evs[1].OccurredAt = last.Add(time.Second) // ahead: kept, and later ones follow it
		}
		res := mustAppend(t, s, stream(c.id, c.exp, evs...))
		if len(res.OccurredAt) != c.n {
			t.Fatalf("append %d: %d result times, want %d", i, len(res.OccurredAt), c.n)
		}
		for j, at := range res.OccurredAt {
			if evs[j].OccurredAt.After(last) {
				last = evs[j].OccurredAt
			}
			if !at.Equal(last) {
				t.Fatalf("append %d (%s expecting %v): result time %d = %v, want %v", i, c.id, c.exp, j, at, last)
			}
		}
	}
	var prev time.Time
	for _, r := range readAll(t, s, flux.ReadAllOptions{}) {
		if r.OccurredAt.Before(prev) {
			t.Fatalf("position %d at %v, before %v", r.Position, r.OccurredAt, prev)
		}
		prev = r.OccurredAt
	}
	ss, ok := s.(flux.SnapshotStore)
	if !ok {
		return
	}
	v := int64(len(readStream(t, s, "ahead", flux.ReadStreamOptions{})))
	if _, err := s.Append(ctx, flux.AppendRequest{
		Streams:   []flux.StreamAppend{stream("ahead", flux.ExpectedVersion(v), event("E", `{}`, base))},
		Snapshots: []flux.SnapshotWrite{snap("ahead", v+1, 1, `{}`, base, 0)},
	}); err != nil {
		t.Fatal(err)
	}
	sn, found, err := ss.LoadSnapshot(ctx, "ahead", flux.SnapshotQuery{SchemaVersion: 1})
	if err != nil || !found || !sn.CreatedAt.Equal(last) {
		t.Fatalf("snapshot at %v (found %v, %v), want the stored time of its event, %v", sn.CreatedAt, found, err, last)
	}
}
