package storetest

import (
	"context"
	"sync"
	"testing"

	"github.com/fluxcapacitor/flux"
)

// retryAdded is the event of the retry test.
type retryAdded struct {
	By int `json:"by"`
}

type retryCounter struct {
	flux.Root
	N int
}

func (c *retryCounter) Apply(e any) {
	if _, ok := e.(retryAdded); ok {
		c.N++
	}
}

type incrementRetryCounter struct {
	ID     string
	Writer int
}

// testRetriesFinish: 32 goroutines increment one aggregate through a
// command bus with RetryOnConflict and its default options — no tuning —
// all at once. Every increment must be applied: the defaults bound the
// retries by time, not by a small number of attempts.
func testRetriesFinish(t *testing.T, h Harness) {
	s := h.New(t)
	reg, err := flux.NewRegistry(flux.AggregateType("RetryCounter", func() *retryCounter { return new(retryCounter) },
		flux.EventType[retryAdded]("RetryAdded", 1)))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: s, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	bus, err := flux.NewCommandBus(flux.CommandBusConfig{Repository: repo,
		Middleware: []flux.Middleware{flux.RetryOnConflict(flux.RetryOptions{})}})
	if err != nil {
		t.Fatal(err)
	}
	if err := flux.HandleCommand(bus, func(ctx context.Context, c incrementRetryCounter) error {
		ctr, err := flux.Load[*retryCounter](ctx, repo, c.ID)
		if err != nil {
			return err
		}
		flux.Raise(ctr, retryAdded{By: c.Writer})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const id, writers = "hot-counter", 32
	c, err := flux.NewAggregate[*retryCounter](reg, id)
	if err != nil {
		t.Fatal(err)
	}
	flux.Raise(c, retryAdded{By: -1})
	if err := repo.Save(ctx, c); err != nil {
		t.Fatal(err)
	}

	start := make(chan struct{})
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[w] = bus.Dispatch(ctx, incrementRetryCounter{ID: id, Writer: w})
		}()
	}
	close(start)
	wg.Wait()
	failed := 0
	for w, err := range errs {
		if err != nil {
			failed++
			if failed <= 3 {
				t.Errorf("writer %d: %v", w, err)
			}
		}
	}
	got, err := flux.Load[*retryCounter](ctx, repo, id)
	if err != nil {
		t.Fatal(err)
	}
	if failed > 0 || got.N != writers+1 || got.Version() != writers+1 {
		t.Fatalf("%d of %d increments failed; the counter has %d events at version %d, want %d", failed, writers, got.N, got.Version(), writers+1)
	}
}
