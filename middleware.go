package flux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"time"
)

// DefaultRetryBudget is how long RetryOnConflict keeps retrying one
// command by default (RetryOptions.MaxElapsed).
const DefaultRetryBudget = 30 * time.Second

// RetryOptions configure RetryOnConflict. The zero value retries a
// conflicted command for up to DefaultRetryBudget (30 s), with full-jitter
// exponential backoff from 5 ms up to 500 ms, and no cap on the number of
// attempts: under contention every writer eventually wins a race (each
// lost race means another writer's save committed), so contended commands
// are all applied unless the budget runs out or the context ends.
type RetryOptions struct {
	// MaxElapsed bounds the time spent on one command: no attempt starts
	// later than this after the first one began (a backoff that would end
	// past it is not waited). Default DefaultRetryBudget. The context's
	// deadline, when earlier, ends the retries too.
	MaxElapsed time.Duration
	// MaxAttempts, when positive, also caps the number of times a command
	// runs. Default 0: no cap, only MaxElapsed.
	MaxAttempts int
	// BaseDelay is the backoff before the second attempt; it doubles each
	// time, up to MaxDelay, and each wait is drawn uniformly from [0, delay]
	// (full jitter). Defaults: 5ms and 500ms.
	BaseDelay, MaxDelay time.Duration
	// Sleep waits d before the next attempt, or returns ctx's error when
	// it ends first. Default: a timer. Replace it to record or simulate
	// the backoff.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now returns the current time, for MaxElapsed. Default time.Now.
	Now func() time.Time
}

// sleep waits d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// RetryOnConflict reruns a command whose save lost an optimistic
// concurrency race (ErrConcurrencyConflict) or that the database aborted
// as a serialization failure, deadlock or lock wait timeout
// (ErrTransient): each attempt reloads its aggregates in a fresh unit of
// work. Other errors are never retried. Put
// it in CommandBusConfig.Middleware; opt-in, because a retried handler must
// be safe to run again (it is, when it only changes aggregates).
func RetryOnConflict(opts RetryOptions) Middleware {
	if opts.MaxElapsed <= 0 {
		opts.MaxElapsed = DefaultRetryBudget
	}
	if opts.BaseDelay <= 0 {
		opts.BaseDelay = 5 * time.Millisecond
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 500 * time.Millisecond
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m *Message) (any, error) {
			delay := opts.BaseDelay
			start := opts.Now()
			for attempt := 1; ; attempt++ {
				res, err := next.Handle(ctx, m)
				if !retryable(err) || uowFrom(ctx) != nil {
					return res, err
				}
				if opts.MaxAttempts > 0 && attempt >= opts.MaxAttempts {
					return res, fmt.Errorf("flux: command %s still conflicted after %d attempts (RetryOptions.MaxAttempts): %w", m.Type, attempt, err)
				}
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				wait := time.Duration(rand.Int64N(int64(delay) + 1))
				if elapsed := opts.Now().Sub(start); elapsed+wait > opts.MaxElapsed {
					return res, fmt.Errorf("flux: command %s still conflicted after %d attempts in %v (RetryOptions.MaxElapsed %v): %w",
						m.Type, attempt, elapsed.Round(time.Millisecond), opts.MaxElapsed, err)
				}
				if err := opts.Sleep(ctx, wait); err != nil {
					return nil, err
				}
				delay = min(2*delay, opts.MaxDelay)
			}
		})
	}
}

// retryable reports whether RetryOnConflict runs a command that failed
// with err again.
func retryable(err error) bool {
	return errors.Is(err, ErrConcurrencyConflict) || errors.Is(err, ErrTransient)
}

// Logging logs every message with log/slog once it is handled: its type,
// message, correlation, causation and request IDs, idempotency key,
// duration and outcome, and its fields — with fields tagged
// `pii:"data"` replaced by "[personal data]". Errors are logged at level
// Error, successes at Info.
func Logging(logger *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m *Message) (any, error) {
			start := time.Now()
			res, err := next.Handle(ctx, m)
			attrs := []slog.Attr{
				slog.String("type", m.Type),
				slog.String("message_id", m.ID),
				slog.String("correlation_id", m.CorrelationID),
				slog.String("causation_id", m.CausationID),
				slog.String("request_id", m.RequestID),
				slog.Duration("duration", time.Since(start)),
				slog.Any("fields", redacted(reflect.ValueOf(m.Body), 0)),
			}
			if m.IdempotencyKey != "" {
				attrs = append(attrs, slog.String("idempotency_key", m.IdempotencyKey))
			}
			if err != nil {
				attrs = append(attrs, slog.String("outcome", "error"), slog.String("error", err.Error()))
				logger.LogAttrs(ctx, slog.LevelError, "flux: message failed", attrs...)
			} else {
				attrs = append(attrs, slog.String("outcome", "ok"))
				logger.LogAttrs(ctx, slog.LevelInfo, "flux: message handled", attrs...)
			}
			return res, err
		})
	}
}

// Redacted is what personal data reads as in logs.
const Redacted = "[personal data]"

// redacted renders v for logs, replacing fields tagged `pii:"data"`.
func redacted(v reflect.Value, depth int) slog.Value {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return slog.AnyValue(nil)
		}
		v = v.Elem()
	}
	if depth > 4 {
		return slog.StringValue("…")
	}
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		var attrs []slog.Attr
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			if mark, _, _ := strings.Cut(f.Tag.Get(PersonalDataTag), ","); mark == "data" {
				attrs = append(attrs, slog.String(f.Name, Redacted))
				continue
			}
			attrs = append(attrs, slog.Attr{Key: f.Name, Value: redacted(v.Field(i), depth+1)})
		}
		return slog.GroupValue(attrs...)
	case reflect.Slice, reflect.Array, reflect.Map:
		if HasPersonalData(v.Type()) {
			return slog.StringValue(fmt.Sprintf("[%d items with personal data]", v.Len()))
		}
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return slog.StringValue(fmt.Sprintf("[%d bytes]", v.Len()))
		}
		return slog.AnyValue(v.Interface())
	case reflect.Invalid:
		return slog.AnyValue(nil)
	default:
		return slog.AnyValue(v.Interface())
	}
}
