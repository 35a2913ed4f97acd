package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux/projection"
)

// TxHarness describes a backend's projection transactions for RunProjectTx.
type TxHarness[Tx any] struct {
	// New returns a fresh, isolated store (see Harness.New) as its
	// TxStore and CheckpointStore.
	New func(t *testing.T) (projection.TxStore[Tx], projection.CheckpointStore)
	// Increment adds 1 to the counter named key inside tx, creating its
	// row at 0 first if needed: the stand-in for a read-model write. It
	// must not run DDL (MySQL commits DDL implicitly): create the table in
	// New.
	Increment func(ctx context.Context, tx Tx, key string) error
	// Count reads the counter named key (0 when it does not exist),
	// outside any transaction.
	Count func(ctx context.Context, t *testing.T, store projection.TxStore[Tx], key string) int
}

// RunProjectTx checks a backend's projection.TxStore: the read-model write
// and the checkpoint commit together or not at all, and two runners that
// start from the same checkpoint cannot both commit. Like Run, it fails
// when goroutines it started outlive it.
func RunProjectTx[Tx any](t *testing.T, h TxHarness[Tx]) {
	checkGoroutines(t)
	t.Run("read model and checkpoint commit together", func(t *testing.T) {
		t.Parallel()
		ts, cs := h.New(t)
		ctx := context.Background()
		inc := func(ctx context.Context, tx Tx) error { return h.Increment(ctx, tx, "n") }
		if err := ts.ProjectTx(ctx, 0, projection.Checkpoint{Name: "p", Position: 5, UpdatedAt: base}, inc); err != nil {
			t.Fatal(err)
		}
		if err := ts.ProjectTx(ctx, 5, projection.Checkpoint{Name: "p", Position: 9, UpdatedAt: base.Add(time.Second)}, inc); err != nil {
			t.Fatal(err)
		}
		cp, err := cs.LoadCheckpoint(ctx, "p")
		if err != nil || cp.Position != 9 || !cp.UpdatedAt.Equal(base.Add(time.Second)) {
			t.Fatalf("checkpoint = %+v, %v; want position 9", cp, err)
		}
		if n := h.Count(ctx, t, ts, "n"); n != 2 {
			t.Fatalf("counter = %d, want 2", n)
		}

		// fn fails: neither the write nor the checkpoint commit.
		boom := errors.New("handler failed")
		err = ts.ProjectTx(ctx, 9, projection.Checkpoint{Name: "p", Position: 12, UpdatedAt: base}, func(ctx context.Context, tx Tx) error {
			if err := h.Increment(ctx, tx, "n"); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v, want the handler's error", err)
		}
		if cp, _ := cs.LoadCheckpoint(ctx, "p"); cp.Position != 9 {
			t.Fatalf("checkpoint moved to %d after a failed handler", cp.Position)
		}
		if n := h.Count(ctx, t, ts, "n"); n != 2 {
			t.Fatalf("counter = %d after a failed handler, want 2", n)
		}

		// A stale starting point: nothing commits.
		err = ts.ProjectTx(ctx, 5, projection.Checkpoint{Name: "p", Position: 12, UpdatedAt: base}, inc)
		if !errors.Is(err, projection.ErrCheckpointMoved) {
			t.Fatalf("stale from: err = %v, want ErrCheckpointMoved", err)
		}
		err = ts.ProjectTx(ctx, 0, projection.Checkpoint{Name: "p", Position: 12, UpdatedAt: base}, inc)
		if !errors.Is(err, projection.ErrCheckpointMoved) {
			t.Fatalf("from 0 on an existing checkpoint: err = %v, want ErrCheckpointMoved", err)
		}
		if n := h.Count(ctx, t, ts, "n"); n != 2 {
			t.Fatalf("counter = %d after stale attempts, want 2", n)
		}
	})

	t.Run("three runners of one projection: losing a race is no failure", func(t *testing.T) { t.Parallel(); testTxRunnersRace(t, h) })

	t.Run("two runners from one checkpoint: exactly one commits", func(t *testing.T) {
		t.Parallel()
		ts, cs := h.New(t)
		ctx := context.Background()
		for round := int64(0); round < 20; round++ {
			var wg sync.WaitGroup
			errs := make([]error, 4)
			start := make(chan struct{})
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					errs[i] = ts.ProjectTx(ctx, round, projection.Checkpoint{Name: "race", Position: round + 1, UpdatedAt: base},
						func(ctx context.Context, tx Tx) error { return h.Increment(ctx, tx, "race") })
				}()
			}
			close(start)
			wg.Wait()
			wins := 0
			for _, err := range errs {
				switch {
				case err == nil:
					wins++
				case !errors.Is(err, projection.ErrCheckpointMoved):
					t.Fatalf("round %d: err = %v, want nil or ErrCheckpointMoved", round, err)
				}
			}
			if wins != 1 {
				t.Fatalf("round %d: %d runners committed, want 1", round, wins)
			}
		}
		if cp, _ := cs.LoadCheckpoint(ctx, "race"); cp.Position != 20 {
			t.Fatalf("checkpoint = %d, want 20", cp.Position)
		}
		if n := h.Count(ctx, t, ts, "race"); n != 20 {
			t.Fatalf("counter = %d, want 20: an event was applied twice or lost", n)
		}
	})
}
