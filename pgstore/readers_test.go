package pgstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pgstore"
	"github.com/fluxcapacitor/flux/txhook"
)

// Readers make progress while appends queue on the log head: one append
// is held open before its commit and 8 more queue behind it, more than the
// pool has connections (pool_max_conns=4). Today's Load, ReadAll, Head and
// idempotency look-ups must still answer. The timeout is generous (the
// test never asserts on speed); the medians are logged.
func TestReadsProceedWhileAppendsQueue(t *testing.T) {
	dsn := testDSN(t) + "&pool_max_conns=4"
	s := openOn(t, dsn, &pgstore.Options{Schema: freshSchema(t, testDSN(t))})
	ctx := t.Context()
	if _, err := s.Append(ctx, flux.AppendRequest{
		Streams:     []flux.StreamAppend{streamOf("existing", flux.NoStream, event("E", `{}`))},
		Idempotency: &flux.IdempotencyRecord{Key: "k1", CreatedAt: time.Now()},
	}); err != nil {
		t.Fatal(err)
	}

	held, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		hctx := txhook.WithBeforeCommit(context.Background(), func(context.Context) error {
			close(held)
			<-release
			return nil
		})
		if _, err := s.Append(hctx, flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("held", flux.NoStream, event("E", `{}`))}}); err != nil {
			t.Errorf("held append: %v", err)
		}
	}()
	<-held
	const queued = 8
	for i := range queued {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Append(context.Background(), flux.AppendRequest{Streams: []flux.StreamAppend{streamOf(fmt.Sprintf("queued-%d", i), flux.NoStream, event("E", `{}`))}}); err != nil {
				t.Errorf("queued append %d: %v", i, err)
			}
		}()
	}
	// Let the queued appends take what connections they can.
	deadline := time.Now().Add(5 * time.Second)
	for s.Pool().Stat().AcquiredConns() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)

	reads := []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"ReadStream", func(ctx context.Context) error {
			for _, err := range s.ReadStream(ctx, "existing", flux.ReadStreamOptions{}) {
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
		{"Head", func(ctx context.Context) error { _, err := s.Head(ctx); return err }},
		{"LookupIdempotency", func(ctx context.Context) error { _, _, err := s.LookupIdempotency(ctx, "k1"); return err }},
		{"LoadSnapshot", func(ctx context.Context) error {
			_, _, err := s.LoadSnapshot(ctx, "existing", flux.SnapshotQuery{})
			return err
		}},
		{"LoadCheckpoint", func(ctx context.Context) error { _, err := s.LoadCheckpoint(ctx, "p"); return err }},
	}
	for _, r := range reads {
		var took []time.Duration
		for range 5 {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			start := time.Now()
			err := r.run(rctx)
			took = append(took, time.Since(start))
			cancel()
			if err != nil {
				t.Errorf("%s while an append is held and %d queue: %v", r.name, queued, err)
				break
			}
		}
		slices.Sort(took)
		t.Logf("%s while an append is held and %d queue: median %v", r.name, queued, took[len(took)/2])
	}
	close(release)
	wg.Wait()
	if n := len(readAll(t, s)); n != 2+queued {
		t.Fatalf("the log holds %d events after the appends, want %d", n, 2+queued)
	}
}

// MaxAppendConns must leave readers a connection: negative values and
// values that would let appends hold the whole pool are refused.
func TestMaxAppendConnsIsValidated(t *testing.T) {
	dsn := testDSN(t) + "&pool_max_conns=4"
	for _, n := range []int{-1, 4, 5} {
		_, err := pgstore.Open(t.Context(), dsn, &pgstore.Options{Schema: freshSchema(t, testDSN(t)), MaxAppendConns: n})
		if err == nil || !strings.Contains(err.Error(), "MaxAppendConns") {
			t.Errorf("MaxAppendConns %d on a pool of 4: err = %v, want it refused", n, err)
		}
	}
	openOn(t, dsn, &pgstore.Options{Schema: freshSchema(t, testDSN(t)), MaxAppendConns: 3})
}
