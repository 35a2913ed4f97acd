package projection_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/projection"
)

// positions records the positions a projection handled.
type positions struct {
	mu  sync.Mutex
	got []int64
}

func (p *positions) handle(_ context.Context, e flux.Envelope) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, e.Position)
	return nil
}

func (p *positions) reset(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = nil
	return nil
}

func (p *positions) list() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

func TestReplaySinceStartsAtTheFirstEventAtOrAfterTheTime(t *testing.T) {
	t.Parallel()
	store, repo := setup(t)
	// Positions 1..6 occurred an hour apart, from t0.
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for i := range 6 {
		_, err := store.Append(t.Context(), flux.AppendRequest{Streams: []flux.StreamAppend{{
			StreamID: "acc", AggregateType: "Account", Expected: flux.Any,
			Events: []flux.EventData{{EventID: ids.New(), EventName: "Deposited", EventVersion: 2, Payload: []byte(`{"amount":1}`), OccurredAt: t0.Add(time.Duration(i) * time.Hour)}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		opts projection.ReplayOptions
		want []int64
	}{
		{"a time an event occurred at includes that event", projection.ReplayOptions{Since: t0.Add(2 * time.Hour)}, []int64{3, 4, 5, 6}},
		{"a time between events starts at the next one", projection.ReplayOptions{Since: t0.Add(2*time.Hour + time.Nanosecond)}, []int64{4, 5, 6}},
		{"a time before the log replays all of it", projection.ReplayOptions{Since: t0.Add(-time.Hour)}, []int64{1, 2, 3, 4, 5, 6}},
		{"a time after the last event replays nothing", projection.ReplayOptions{Since: t0.Add(6 * time.Hour)}, nil},
		{"Since wins over From", projection.ReplayOptions{From: 1, Since: t0.Add(4 * time.Hour)}, []int64{5, 6}},
	}
	for _, swap := range []bool{false, true} {
		for _, c := range cases {
			name := c.name
			if swap {
				name = "RebuildSwap: " + name
			}
			t.Run(name, func(t *testing.T) {
				ctx := t.Context()
				r, err := projection.NewRunner(projection.RunnerConfig{Repository: repo, BatchSize: 2})
				if err != nil {
					t.Fatal(err)
				}
				var last projection.Progress
				opts := c.opts
				opts.Progress = func(p projection.Progress) { last = p }
				var model *positions
				var name string
				if swap {
					sw := &positionsSwapper{live: &positions{got: []int64{-1}}, cps: store} // to be replaced
					name = sw.Name()
					_ = r.Add(sw)
					err = r.RebuildSwap(ctx, name, opts)
					model = sw.read()
				} else {
					model, name = &positions{got: []int64{-1}}, "since" // to be emptied
					_ = r.Add(projection.New(name, model.handle, projection.OnReset(model.reset)))
					err = r.Rebuild(ctx, name, opts)
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := model.list(); !slices.Equal(got, c.want) {
					t.Fatalf("replayed positions %v, want %v", got, c.want)
				}
				cp, err := store.LoadCheckpoint(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				if cp.Position != 6 {
					t.Fatalf("checkpoint at %d after the replay, want the head, 6", cp.Position)
				}
				if !last.Done || last.Position != 6 || last.Head != 6 || last.Events != int64(len(c.want)) {
					t.Fatalf("last progress %+v, want done at 6 of 6 after %d events", last, len(c.want))
				}
			})
		}
	}
}

// positionsSwapper is a Swapper over positions.
type positionsSwapper struct {
	mu           sync.Mutex
	live, shadow *positions
	cps          projection.CheckpointStore
}

func (s *positionsSwapper) Name() string              { return "since-swapped" }
func (s *positionsSwapper) Filter() projection.Filter { return projection.Filter{} }
func (s *positionsSwapper) read() *positions          { s.mu.Lock(); defer s.mu.Unlock(); return s.live }
func (s *positionsSwapper) Handle(ctx context.Context, e flux.Envelope) error {
	return s.read().handle(ctx, e)
}

func (s *positionsSwapper) Shadow(context.Context) (projection.Projection, error) {
	s.shadow = &positions{}
	return projection.New("since-swapped#next", s.shadow.handle), nil
}

func (s *positionsSwapper) Swap(ctx context.Context, cp projection.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live = s.shadow
	return s.cps.SaveCheckpoint(ctx, projection.Checkpoint{Name: s.Name(), Position: cp.Position, Supersedes: projection.AnyPosition, UpdatedAt: time.Now()})
}
