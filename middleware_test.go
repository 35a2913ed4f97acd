package flux_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
)

// TestRetryBacksOffWithFullJitter records the waits of RetryOnConflict on
// a handler that always conflicts: each is drawn from [0, delay], the delay
// doubling from BaseDelay up to MaxDelay, and the draws spread over that
// range (jitter) rather than sitting at its top.
func TestRetryBacksOffWithFullJitter(t *testing.T) {
	t.Parallel()
	var waits []time.Duration
	opts := flux.RetryOptions{MaxAttempts: 7, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond,
		Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}
	calls := 0
	h := flux.RetryOnConflict(opts)(flux.HandlerFunc(func(context.Context, *flux.Message) (any, error) {
		calls++
		return nil, &flux.ConflictError{StreamID: "s", Expected: 1, Actual: 2}
	}))
	bounds := []time.Duration{1, 2, 4, 8, 10, 10}
	low, high := 0, 0
	for run := 0; run < 100; run++ {
		waits, calls = waits[:0], 0
		_, err := h.Handle(t.Context(), &flux.Message{Type: "test.Command"})
		if !errors.Is(err, flux.ErrConcurrencyConflict) || calls != 7 || len(waits) != 6 {
			t.Fatalf("err %v after %d calls and %d waits; want a conflict after 7 calls and 6 waits", err, calls, len(waits))
		}
		for i, w := range waits {
			bound := bounds[i] * time.Millisecond
			if w < 0 || w > bound {
				t.Fatalf("wait %d is %v, want within [0, %v]", i+1, w, bound)
			}
			if w < bound/2 {
				low++
			} else {
				high++
			}
		}
	}
	// 600 uniform draws: all in one half has probability 2^-599.
	if low == 0 || high == 0 {
		t.Fatalf("waits not jittered: %d below half their bound, %d above", low, high)
	}
}

// TestRetryStopsWhenTheContextEnds: a wait that the context interrupts
// ends the retries with the context's error.
func TestRetryStopsWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	h := flux.RetryOnConflict(flux.RetryOptions{BaseDelay: time.Hour, MaxDelay: time.Hour})(flux.HandlerFunc(func(context.Context, *flux.Message) (any, error) {
		calls++
		cancel()
		return nil, &flux.ConflictError{StreamID: "s", Expected: 1, Actual: 2}
	}))
	if _, err := h.Handle(ctx, &flux.Message{Type: "test.Command"}); !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("err %v after %d calls; want context.Canceled after 1", err, calls)
	}
}

// TestRetryDefaultsAreATimeBudget: with RetryOptions{} a command that keeps
// conflicting is retried far beyond a handful of attempts, with full-jitter
// waits of at most 500 ms, until the next wait would pass the 30 s budget;
// the error says so. Time is simulated: Sleep advances Now.
func TestRetryDefaultsAreATimeBudget(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	start := now
	var waits []time.Duration
	opts := flux.RetryOptions{
		Now:   func() time.Time { return now },
		Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); now = now.Add(d); return nil },
	}
	calls := 0
	h := flux.RetryOnConflict(opts)(flux.HandlerFunc(func(context.Context, *flux.Message) (any, error) {
		calls++
		now = now.Add(2 * time.Millisecond) // an attempt takes time too
		return nil, &flux.ConflictError{StreamID: "s", Expected: 1, Actual: 2}
	}))
	_, err := h.Handle(t.Context(), &flux.Message{Type: "test.Command"})
	if !errors.Is(err, flux.ErrConcurrencyConflict) || !strings.Contains(err.Error(), "MaxElapsed") {
		t.Fatalf("err = %v, want a conflict naming RetryOptions.MaxElapsed", err)
	}
	if calls < 20 {
		t.Fatalf("%d attempts in the default budget; want no small attempt cap", calls)
	}
	if elapsed := now.Sub(start); elapsed > flux.DefaultRetryBudget+2*time.Millisecond || elapsed < flux.DefaultRetryBudget-time.Second {
		t.Fatalf("retried for %v, want about the %v budget and never past it", elapsed, flux.DefaultRetryBudget)
	}
	for i, w := range waits {
		if w < 0 || w > 500*time.Millisecond || i == 0 && w > 5*time.Millisecond {
			t.Fatalf("wait %d is %v, want within [0, min(5ms·2^%d, 500ms)]", i+1, w, i)
		}
	}
}

// TestRetryAttemptCapIsOptIn: MaxAttempts still caps when set.
func TestRetryAttemptCapIsOptIn(t *testing.T) {
	t.Parallel()
	calls := 0
	h := flux.RetryOnConflict(flux.RetryOptions{MaxAttempts: 4, Sleep: func(context.Context, time.Duration) error { return nil }})(
		flux.HandlerFunc(func(context.Context, *flux.Message) (any, error) {
			calls++
			return nil, &flux.ConflictError{StreamID: "s", Expected: 1, Actual: 2}
		}))
	if _, err := h.Handle(t.Context(), &flux.Message{Type: "test.Command"}); !errors.Is(err, flux.ErrConcurrencyConflict) || calls != 4 || !strings.Contains(err.Error(), "MaxAttempts") {
		t.Fatalf("err %v after %d calls, want a conflict naming MaxAttempts after 4", err, calls)
	}
}

// TestRetryRetriesTransientFailures: a serialization failure or deadlock
// (ErrTransient) is retried like a conflict; other errors are not.
func TestRetryRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	noWait := func(context.Context, time.Duration) error { return nil }
	for _, tc := range []struct {
		name      string
		err       error
		wantCalls int
	}{
		{"a serialization failure is retried", fmt.Errorf("pgstore: append: %w: could not serialize access (SQLSTATE 40001)", flux.ErrTransient), 3},
		{"a conflict is retried", &flux.ConflictError{StreamID: "s", Expected: 1, Actual: 2}, 3},
		{"another error is not", errors.New("boom"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			h := flux.RetryOnConflict(flux.RetryOptions{MaxAttempts: 3, Sleep: noWait})(flux.HandlerFunc(func(context.Context, *flux.Message) (any, error) {
				calls++
				return nil, tc.err
			}))
			if _, err := h.Handle(t.Context(), &flux.Message{Type: "test.Command"}); !errors.Is(err, tc.err) || calls != tc.wantCalls {
				t.Fatalf("err %v after %d calls; want the handler's error after %d", err, calls, tc.wantCalls)
			}
		})
	}
	calls := 0
	h := flux.RetryOnConflict(flux.RetryOptions{Sleep: noWait})(flux.HandlerFunc(func(context.Context, *flux.Message) (any, error) {
		calls++
		if calls < 3 {
			return nil, fmt.Errorf("mysqlstore: append: %w: deadlock (1213)", flux.ErrTransient)
		}
		return "ok", nil
	}))
	if res, err := h.Handle(t.Context(), &flux.Message{Type: "test.Command"}); err != nil || res != "ok" || calls != 3 {
		t.Fatalf("got %v, %v after %d calls; want ok on the third", res, err, calls)
	}
}
