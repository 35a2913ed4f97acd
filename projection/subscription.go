package projection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fluxcapacitor/flux"
)

// UndecodablePolicy says what happens to an event that cannot be decoded.
type UndecodablePolicy int

const (
	// StopOnUndecodable stops the projection at the event, with the error
	// in its status; nothing after it is handled. The default.
	StopOnUndecodable UndecodablePolicy = iota
	// SkipUndecodable skips the event, logs it and lists it in the
	// projection's status, and goes on.
	SkipUndecodable
)

// ErrCaughtUp is returned by Subscription.Next when the subscription has
// reached its UpTo position.
var ErrCaughtUp = errors.New("projection: caught up")

// SubscriptionOptions configure a Subscription. Zero values are defaults.
type SubscriptionOptions struct {
	// From is the last position already handled (0: the beginning).
	From int64
	// UpTo stops the subscription (Next returns ErrCaughtUp) once it has
	// read up to this position; 0 follows the log forever.
	UpTo int64
	// Filter selects events; records outside it are read but not decoded.
	Filter Filter
	// BatchSize is the most records read per query. Default 500.
	BatchSize int
	// PollInterval is how often a caught-up subscription looks for new
	// events when no wake-up comes. Default 100ms.
	PollInterval time.Duration
	// GapWait bounds how long a hole in the positions may stay unfilled
	// before it is skipped and reported. Default 1s. (The backends never
	// leave holes; this is a safety net.)
	GapWait time.Duration
	// Undecodable says what to do with events that do not decode.
	Undecodable UndecodablePolicy
	// Raw delivers records as stored, without decoding them (see
	// RawProjection).
	Raw bool
	// Clock tells time for gap waits. Default time.Now.
	Clock func() time.Time

	// resume, if set, is asked before each read where the projection's
	// stored checkpoint is, given the subscription's position; the
	// subscription skips ahead to a position past its own (another runner
	// handled the events in between). Set by the runner.
	resume func(ctx context.Context, pos int64) (int64, error)
}

func (o SubscriptionOptions) withDefaults() SubscriptionOptions {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 100 * time.Millisecond
	}
	if o.GapWait <= 0 {
		o.GapWait = time.Second
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	return o
}

// Batch is what one Next returns.
type Batch struct {
	// Events are the decoded, filtered events read, in global order.
	Events []flux.Envelope
	// From and To bound the positions read: (From, To]. To may be past the
	// last event when records were filtered out.
	From, To int64
	// Skipped lists undecodable events skipped (SkipUndecodable).
	Skipped []Skipped
	// Gaps lists positions that never appeared within GapWait.
	Gaps []int64
}

// Skipped is an event a subscription skipped because it did not decode.
type Skipped struct {
	Position      int64
	StreamID      string
	StreamVersion int64
	EventName     string
	Error         string
}

// Subscription reads the global log in commit order from a position,
// catches up in batches, then follows new events (woken early by stores
// implementing Waker). It is not safe for concurrent use.
type Subscription struct {
	repo    *flux.Repository
	store   flux.EventStore
	opts    SubscriptionOptions
	pos     int64
	wake    <-chan struct{}
	gapSeen time.Time // when the hole after pos was first seen
	items   []item    // read's buffer, reused from batch to batch
}

// Subscribe returns a subscription over repo's store. The context bounds
// the wake-up listener.
func Subscribe(ctx context.Context, repo *flux.Repository, opts SubscriptionOptions) (*Subscription, error) {
	opts = opts.withDefaults()
	s := &Subscription{repo: repo, store: repo.Store(), opts: opts, pos: opts.From}
	if w, ok := s.store.(Waker); ok {
		ch, err := w.Wake(ctx)
		if err != nil {
			return nil, fmt.Errorf("projection: subscribe to wake-ups: %w", err)
		}
		s.wake = ch
	}
	return s, nil
}

// Position returns the last position read.
func (s *Subscription) Position() int64 { return s.pos }

// Next returns the next batch, waiting while there is nothing new. Errors
// are the store's, the context's, an undecodable event's *flux.EventError
// (StopOnUndecodable; the position does not move past it), or
// ErrCaughtUp.
func (s *Subscription) Next(ctx context.Context) (Batch, error) {
	for {
		if s.opts.resume != nil {
			at, err := s.opts.resume(ctx, s.pos)
			if err != nil {
				return Batch{}, err
			}
			if at > s.pos {
				s.pos, s.gapSeen = at, time.Time{}
			}
		}
		if s.opts.UpTo > 0 && s.pos >= s.opts.UpTo {
			return Batch{From: s.pos, To: s.pos}, ErrCaughtUp
		}
		recs, err := s.read(ctx)
		if err != nil {
			return Batch{}, err
		}
		var gaps []int64
		if len(recs) > 0 && recs[0].env.Position != s.pos+1 {
			// A hole right after our position: wait for it to fill.
			now := s.opts.Clock()
			if s.gapSeen.IsZero() {
				s.gapSeen = now
			}
			if now.Sub(s.gapSeen) < s.opts.GapWait {
				if err := s.idle(ctx, min(s.opts.PollInterval, s.opts.GapWait)); err != nil {
					return Batch{}, err
				}
				continue
			}
			for p := s.pos + 1; p < recs[0].env.Position; p++ {
				gaps = append(gaps, p)
			}
		}
		s.gapSeen = time.Time{}
		if len(recs) == 0 {
			if err := s.idle(ctx, s.opts.PollInterval); err != nil {
				return Batch{}, err
			}
			continue
		}
		// Keep the contiguous run; a later hole is handled by the next call.
		for i := 1; i < len(recs); i++ {
			if recs[i].env.Position != recs[i-1].env.Position+1 {
				recs = recs[:i]
				break
			}
		}
		b := Batch{From: s.pos, Gaps: gaps}
		matches := 0
		for i := range recs {
			if recs[i].match && recs[i].err == nil {
				matches++
			}
		}
		if matches > 0 {
			b.Events = make([]flux.Envelope, 0, matches)
		}
		for i := range recs {
			it := &recs[i]
			rec := &it.env.Record
			if !it.match {
				continue
			}
			env, err := it.env, it.err
			if err != nil {
				if !Undecodable(err) {
					return Batch{}, err
				}
				if s.opts.Undecodable == StopOnUndecodable {
					if len(b.Events) > 0 || rec.Position > b.From+1 {
						// Deliver what precedes the bad event first.
						b.To = rec.Position - 1
						s.pos = b.To
						return b, nil
					}
					return Batch{}, err
				}
				b.Skipped = append(b.Skipped, Skipped{Position: rec.Position, StreamID: rec.StreamID,
					StreamVersion: rec.StreamVersion, EventName: rec.EventName, Error: err.Error()})
				continue
			}
			b.Events = append(b.Events, env)
		}
		b.To = recs[len(recs)-1].env.Position
		s.pos = b.To
		return b, nil
	}
}

// item is a record read, decoded if it passes the filter.
type item struct {
	env   flux.Envelope // env.Record is the stored record
	err   error         // decoding failed
	match bool          // passes the filter
}

// read reads the next records and decodes those that pass the filter as
// they arrive, so that decoding overlaps the database sending the rest.
func (s *Subscription) read(ctx context.Context) ([]item, error) {
	limit := s.opts.BatchSize
	clear(s.items) // drop the previous batch's events
	items := s.items[:0]
	defer func() { s.items = items }()
	for rec, err := range s.store.ReadAll(ctx, flux.ReadAllOptions{After: s.pos, Limit: limit}) {
		if err != nil {
			return nil, err
		}
		if s.opts.UpTo > 0 && rec.Position > s.opts.UpTo {
			break
		}
		it := item{match: s.repo.Registry().Matches(&rec, s.opts.Filter.EventNames, s.opts.Filter.AggregateTypes) ||
			(s.opts.Filter.Forgetting && flux.IsSubjectForgotten(&rec))}
		switch {
		case !it.match:
			it.env.Record = rec
		case s.opts.Raw:
			it.env = flux.Envelope{Record: rec, Name: rec.EventName, Version: rec.EventVersion}
		default:
			it.env, it.err = s.repo.Decode(ctx, rec)
			if it.err != nil {
				it.env.Record = rec
			}
		}
		items = append(items, it)
	}
	return items, nil
}

// idle waits for a wake-up, the poll interval or the context.
func (s *Subscription) idle(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.wake:
	case <-t.C:
	}
	return nil
}

// Undecodable reports whether err means an event cannot be decoded (as
// opposed to a failure of the store, which is worth retrying).
func Undecodable(err error) bool {
	var ee *flux.EventError
	if !errors.As(err, &ee) || errors.Is(err, flux.ErrStoreUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	return errors.Is(err, flux.ErrUnknownEvent) || errors.Is(err, flux.ErrCorruptEvent) ||
		errors.Is(err, flux.ErrUpcast) || errors.Is(err, flux.ErrPersonalData)
}
