package projection_test

import (
	"context"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/projection"
)

// readsRecorder is a memstore that records where each ReadAll starts.
type readsRecorder struct {
	*memstore.Store
	mu    sync.Mutex
	after []int64
}

func (s *readsRecorder) ReadAll(ctx context.Context, opts flux.ReadAllOptions) iter.Seq2[flux.Record, error] {
	s.mu.Lock()
	s.after = append(s.after, opts.After)
	s.mu.Unlock()
	return s.Store.ReadAll(ctx, opts)
}

func (s *readsRecorder) reads() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.after)
}

// overtaken is a checkpoint store where another runner moves the
// checkpoint from at to to right after this runner saves at.
type overtaken struct {
	projection.CheckpointStore
	at, to int64
}

func (o *overtaken) SaveCheckpoint(ctx context.Context, cp projection.Checkpoint) error {
	if err := o.CheckpointStore.SaveCheckpoint(ctx, cp); err != nil {
		return err
	}
	if cp.Position == o.at {
		return o.CheckpointStore.SaveCheckpoint(ctx, projection.Checkpoint{Name: cp.Name, Position: o.to, Supersedes: o.at, UpdatedAt: time.Now()})
	}
	return nil
}

// The runner looks at the stored checkpoint before reading a batch: events
// another runner has handled meanwhile are neither read nor handled again.
func TestRunnerSkipsWhatAnotherRunnerHandled(t *testing.T) {
	mem, _ := setup(t)
	store := &readsRecorder{Store: mem}
	_, base := setup(t)
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: base.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	deposit(t, repo, "a", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20) // positions 1-21
	var (
		mu      sync.Mutex
		handled []int64
	)
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: repo, Checkpoints: &overtaken{CheckpointStore: mem, at: 5, to: 15},
		BatchSize: 5, PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = r.Add(projection.New("overtaken", func(ctx context.Context, e flux.Envelope) error {
		mu.Lock()
		defer mu.Unlock()
		handled = append(handled, e.Position)
		if e.Position == 21 {
			cancel()
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Run(ctx)
	want := []int64{1, 2, 3, 4, 5, 16, 17, 18, 19, 20, 21}
	if !slices.Equal(handled, want) {
		t.Fatalf("handled %v, want %v: positions 6-15 were handled by another runner", handled, want)
	}
	for _, after := range store.reads() {
		if after >= 5 && after < 15 {
			t.Fatalf("reads started after %v: the batch after 5 was read although the checkpoint had moved to 15", store.reads())
		}
	}
	st, _ := r.Status(context.Background())
	if st[0].Failures != 0 || st[0].LastError != "" {
		t.Fatalf("status %+v: being overtaken is no failure", st[0])
	}
}

// refusing is a checkpoint store that refuses every save although the
// checkpoint never moves: not another runner's progress.
type refusing struct{ projection.CheckpointStore }

func (refusing) SaveCheckpoint(ctx context.Context, cp projection.Checkpoint) error {
	return &projection.CheckpointBehindError{Name: cp.Name, Supersedes: cp.Supersedes, Position: cp.Position, Stored: cp.Supersedes + 1}
}

// A race lost twice at the same position, the reloaded checkpoint not
// having moved, is a failure with a backoff, not a busy loop.
func TestRaceLostTwiceAtOnePositionIsAFailure(t *testing.T) {
	store, repo := setup(t)
	deposit(t, repo, "a", 1, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []time.Duration
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: repo, Checkpoints: refusing{store}, PollInterval: time.Millisecond,
		MinBackoff: time.Second, Sleep: func(ctx context.Context, d time.Duration) error {
			waits = append(waits, d)
			if len(waits) == 2 {
				cancel()
			}
			return ctx.Err()
		}})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	if err := r.Add(projection.New("refused", func(context.Context, flux.Envelope) error { calls++; return nil })); err != nil {
		t.Fatal(err)
	}
	_ = r.Run(ctx)
	// Each cycle: a lost race (no failure), the same loss again (failure,
	// backoff).
	if !slices.Equal(waits, []time.Duration{time.Second, 2 * time.Second}) || calls != 4*3 {
		t.Fatalf("waits %v after %d handler calls; want [1s 2s] after 12", waits, calls)
	}
	st, _ := r.Status(context.Background())
	if st[0].Failures != 2 || !strings.Contains(st[0].LastError, "stored at 1") {
		t.Fatalf("status %+v, want 2 failures", st[0])
	}
}
