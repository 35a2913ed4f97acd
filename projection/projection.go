package projection

import (
	"context"
	"fmt"
	"time"

	"github.com/fluxcapacitor/flux"
)

// Projection is a named consumer of the global log. Implementations are
// Handler (at-least-once; the runner keeps the checkpoint) or BatchHandler
// (it keeps the checkpoint itself, atomically with its read model).
type Projection interface {
	Name() string
	Filter() Filter
}

// Filter selects the events a projection receives; empty lists mean all.
// Event names are registered (current) names: events stored under older
// names of an event are included and upcast.
type Filter struct {
	EventNames     []string
	AggregateTypes []string
	// Forgetting also selects flux.SubjectForgotten records, whatever the
	// lists say (an unfiltered projection receives them anyway): the
	// signal that a data subject was forgotten, on which a read model
	// holding personal data erases or anonymises the subject's rows.
	Forgetting bool
}

// Handler is an at-least-once projection: Handle runs for every event in
// order, and the runner saves the checkpoint after each batch.
type Handler interface {
	Projection
	Handle(ctx context.Context, e flux.Envelope) error
}

// BatchHandler applies a batch and records its own checkpoint: events (in
// order, filtered) were read from the log after position from up to
// position to (inclusive), and the checkpoint must move from -> to with
// them, atomically.
type BatchHandler interface {
	Projection
	ApplyBatch(ctx context.Context, events []flux.Envelope, from, to int64) error
	Checkpoint(ctx context.Context) (Checkpoint, error)
}

// RawProjection is implemented by projections that want events as stored,
// not decoded: their Envelopes carry only the Record (Event is nil, Name
// and Version are the stored ones). Nothing is decoded or decrypted, so an
// event the application cannot decode does not stop them. The NATS relay
// is one: it forwards stored bytes.
type RawProjection interface {
	Projection
	RawRecords() bool
}

// Resetter is implemented by projections whose read model can be emptied,
// for a rebuild in place.
type Resetter interface {
	Reset(ctx context.Context) error
}

// Option configures a projection made by New or NewTx.
type Option func(*base)

// Events keeps only events with these registered names.
func Events(names ...string) Option { return func(b *base) { b.filter.EventNames = names } }

// AggregateTypes keeps only events of these aggregate types (the PHP
// library's event_to_aggregate routing).
func AggregateTypes(types ...string) Option {
	return func(b *base) { b.filter.AggregateTypes = types }
}

// Forgetting makes the projection receive flux.SubjectForgotten records
// besides the events its other options select. Every read model that
// keeps personal data (decrypted values, or anything derived from them)
// needs it: on a SubjectForgotten event, delete or anonymise the rows of
// e.Event.(flux.SubjectForgotten).Subject. The record is appended once per
// subject, after its key was deleted (pii.Protector.Forget, `flux forget`).
func Forgetting() Option { return func(b *base) { b.filter.Forgetting = true } }

// OnReset sets what Reset does (empty the read model) for rebuilds.
func OnReset(fn func(ctx context.Context) error) Option { return func(b *base) { b.reset = fn } }

type base struct {
	name   string
	filter Filter
	reset  func(ctx context.Context) error
}

func (b *base) Name() string   { return b.name }
func (b *base) Filter() Filter { return b.filter }

// Reset implements Resetter.
func (b *base) Reset(ctx context.Context) error {
	if b.reset == nil {
		return fmt.Errorf("projection %q has no reset function (projection.OnReset); it cannot be rebuilt in place", b.name)
	}
	return b.reset(ctx)
}

// Func is an at-least-once projection calling a function per event.
type Func struct {
	base
	handle func(ctx context.Context, e flux.Envelope) error
}

// New returns an at-least-once projection: handle runs for every selected
// event in global order; after a crash it may see events again (use
// e.EventID to deduplicate).
func New(name string, handle func(ctx context.Context, e flux.Envelope) error, opts ...Option) *Func {
	f := &Func{base: base{name: name}, handle: handle}
	for _, o := range opts {
		o(&f.base)
	}
	return f
}

// Handle implements Handler.
func (f *Func) Handle(ctx context.Context, e flux.Envelope) error { return f.handle(ctx, e) }

// Tx is an exactly-once projection whose read model lives in the event
// store's database.
type Tx[T any] struct {
	base
	store  TxStore[T]
	cps    CheckpointStore
	handle func(ctx context.Context, tx T, e flux.Envelope) error
	clock  func() time.Time
}

// NewTx returns an exactly-once projection: each batch's read-model
// changes (handle, in tx) and its checkpoint commit in one transaction of
// store. store must also be the CheckpointStore the runner uses.
func NewTx[T any](name string, store interface {
	TxStore[T]
	CheckpointStore
}, handle func(ctx context.Context, tx T, e flux.Envelope) error, opts ...Option) *Tx[T] {
	p := &Tx[T]{base: base{name: name}, store: store, cps: store, handle: handle, clock: time.Now}
	for _, o := range opts {
		o(&p.base)
	}
	return p
}

// ApplyBatch implements BatchHandler.
func (p *Tx[T]) ApplyBatch(ctx context.Context, events []flux.Envelope, from, to int64) error {
	return p.store.ProjectTx(ctx, from, Checkpoint{Name: p.name, Position: to, UpdatedAt: p.clock()}, func(ctx context.Context, tx T) error {
		for _, e := range events {
			if err := p.handle(ctx, tx, e); err != nil {
				return fmt.Errorf("projection %q: event %s at position %d: %w", p.name, e.Name, e.Position, err)
			}
		}
		return nil
	})
}

// Checkpoint implements BatchHandler.
func (p *Tx[T]) Checkpoint(ctx context.Context) (Checkpoint, error) {
	return p.cps.LoadCheckpoint(ctx, p.name)
}
