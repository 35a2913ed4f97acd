package flux

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
)

// Publisher receives the events of every successful save, after commit
// (Config.Publisher). EventBus is the in-process implementation.
type Publisher interface {
	Publish(ctx context.Context, events []Envelope) error
}

// ErrPublish is matched by the *PublishError a save returns when event
// handlers failed after the events were stored.
var ErrPublish = errors.New("flux: publish domain events")

// PublishError reports event handlers that failed after a commit (the PHP
// library's PublishDomainEventsException). The events are stored: do not
// retry the command. Reliable, retried handling belongs in a projection.
type PublishError struct {
	// Failures holds one entry per failed handler call.
	Failures []HandlerFailure
}

// HandlerFailure is one failed event handler call.
type HandlerFailure struct {
	EventID   string
	EventName string
	StreamID  string
	Err       error
}

func (e *PublishError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "flux: events were stored but %d event handler call(s) failed:", len(e.Failures))
	for _, f := range e.Failures {
		fmt.Fprintf(&b, " %s of stream %q (%s): %v;", f.EventName, f.StreamID, f.EventID, f.Err)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// Is reports whether target is ErrPublish.
func (e *PublishError) Is(target error) bool { return target == ErrPublish }

// Unwrap returns the handlers' errors.
func (e *PublishError) Unwrap() []error {
	errs := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		errs[i] = f.Err
	}
	return errs
}

// EventBus calls in-process handlers for saved events: synchronously, in
// the order the events were stored, after the commit, never for a save
// that rolled back. Register handlers with OnEvent before use; it is safe
// for concurrent use afterwards.
//
// Each handler's context carries the event's metadata with the event's ID
// as causation, so commands a handler dispatches continue the chain
// (same correlation ID); EnvelopeFrom returns the event's envelope.
type EventBus struct {
	mu       sync.RWMutex
	handlers map[reflect.Type][]func(context.Context, any) error
	all      []func(context.Context, Envelope) error
}

var _ Publisher = (*EventBus)(nil)

// NewEventBus returns an empty event bus. It takes no config: its
// handlers are registered with OnEvent and OnAnyEvent, and it is
// given to a repository as Config.Publisher.
func NewEventBus() *EventBus {
	return &EventBus{handlers: make(map[reflect.Type][]func(context.Context, any) error)}
}

// OnEvent registers fn for events of type E. Several handlers of one type
// run in registration order.
func OnEvent[E any](b *EventBus, fn func(ctx context.Context, event E) error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := reflect.TypeFor[E]()
	b.handlers[t] = append(b.handlers[t], func(ctx context.Context, e any) error { return fn(ctx, e.(E)) })
}

// OnAnyEvent registers fn for every event.
func (b *EventBus) OnAnyEvent(fn func(ctx context.Context, e Envelope) error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.all = append(b.all, fn)
}

type envelopeKey struct{}

// EnvelopeFrom returns the envelope of the event an event handler is
// handling.
func EnvelopeFrom(ctx context.Context) (Envelope, bool) {
	e, ok := ctx.Value(envelopeKey{}).(Envelope)
	return e, ok
}

// Publish implements Publisher. Every handler of every event runs, even
// after one failed; the failures are returned together as a *PublishError.
func (b *EventBus) Publish(ctx context.Context, events []Envelope) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var failures []HandlerFailure
	for _, e := range events {
		hs := b.handlers[reflect.TypeOf(e.Event)]
		if len(hs) == 0 && len(b.all) == 0 {
			continue
		}
		hctx := context.WithValue(ctx, envelopeKey{}, e)
		hctx = WithCausationID(WithCorrelationID(hctx, e.Metadata.CorrelationID), e.EventID)
		fail := func(err error) {
			if err != nil {
				failures = append(failures, HandlerFailure{EventID: e.EventID, EventName: e.Name, StreamID: e.StreamID, Err: err})
			}
		}
		for _, h := range hs {
			fail(safeCall(func() error { return h(hctx, e.Event) }))
		}
		for _, h := range b.all {
			fail(safeCall(func() error { return h(hctx, e) }))
		}
	}
	if len(failures) > 0 {
		return &PublishError{Failures: failures}
	}
	return nil
}

// safeCall turns a handler's panic into an error, so one broken handler
// cannot hide that the events were stored.
func safeCall(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return fn()
}
