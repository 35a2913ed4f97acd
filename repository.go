package flux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"maps"
	"reflect"
	"strconv"
	"time"

	"github.com/fluxcapacitor/flux/uuid"
)

// Config configures a Repository. Store and Registry are required; every
// other field documents its default.
type Config struct {
	// Store persists the events. Required.
	Store EventStore
	// Registry maps names to types. Required.
	Registry *Registry
	// Clock returns the current time, given to saved events (UTC,
	// microseconds); the store keeps it unless the log already holds a
	// later time, which the events then get (see StampTimes). Default:
	// time.Now.
	Clock func() time.Time
	// NewID returns a new event ID; it must return UUIDs. Default: UUIDv7.
	NewID func() string
	// Logger receives diagnostics. Default: discard.
	Logger *slog.Logger
	// Publisher receives the events of every successful save, after the
	// commit (see EventBus). Default: none.
	Publisher Publisher
	// Observer is told of saves, appends, loads, upcasts and personal-data
	// failures (and, through the buses and runners over this repository,
	// of commands and projection batches). Default: none.
	Observer Observer
	// Protector encrypts fields marked as personal data (see package pii).
	// Required when a registered event type has `pii:"data"` fields, so
	// that personal data can never be stored in clear by omission.
	Protector DataProtector
}

func (c Config) withDefaults() Config {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.NewID == nil {
		g := new(uuid.Generator)
		c.NewID = g.New
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("flux: Config.Store is nil; pass a store such as memstore.New() or sqlitestore.Open(...)"))
	}
	if c.Registry == nil {
		errs = append(errs, errors.New("flux: Config.Registry is nil; build one with flux.NewRegistry"))
	}
	return errors.Join(errs...)
}

// Repository saves aggregates as events and rebuilds them from events. It
// is safe for concurrent use; the aggregates it returns are not.
type Repository struct {
	store     EventStore
	snapshots SnapshotStore // nil when the store has none
	reg       *Registry
	cfg       Config
}

// NewRepository returns a repository over cfg.Store.
func NewRepository(cfg Config) (*Repository, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Repository{store: cfg.Store, reg: cfg.Registry, cfg: cfg}
	if cfg.Protector == nil {
		for _, name := range cfg.Registry.EventNames() {
			if cfg.Registry.events[name].hasPII {
				return nil, fmt.Errorf("flux: event %q has fields marked as personal data (pii tags) but Config.Protector is nil; configure pii.New so they are encrypted", name)
			}
		}
	}
	if c, ok := cfg.Protector.(interface{ CheckType(reflect.Type) error }); ok {
		for _, name := range cfg.Registry.EventNames() {
			def := cfg.Registry.events[name]
			if err := c.CheckType(def.typ); err != nil {
				return nil, fmt.Errorf("flux: event %q (Go type %v) cannot be protected: %w", name, def.typ, err)
			}
		}
	}
	if err := r.checkSnapshotStates(); err != nil {
		return nil, err
	}
	r.snapshots, _ = cfg.Store.(SnapshotStore)
	if r.snapshots == nil {
		for _, name := range cfg.Registry.AggregateTypes() {
			if _, ok := cfg.Registry.SnapshotPolicyOf(name); ok {
				return nil, fmt.Errorf("flux: aggregate %q takes snapshots but store %T does not implement flux.SnapshotStore; disable them with flux.Snapshots(flux.SnapshotPolicy{Disabled: true})", name, cfg.Store)
			}
		}
	}
	return r, nil
}

// checkSnapshotStates refuses, at start-up, snapshot states that would
// store the personal data of their aggregate's events in clear, and states
// whose personal-data marks the protector cannot work with.
func (r *Repository) checkSnapshotStates() error {
	for _, name := range r.reg.AggregateTypes() {
		def := r.reg.aggregates[name]
		if def.snapshot == nil {
			continue
		}
		state, err := snapshotStateType(def)
		if err != nil {
			return err
		}
		if err := checkSnapshotStateCached(def, state); err != nil {
			return err
		}
		if state == nil || !HasPersonalData(state) {
			continue
		}
		if r.cfg.Protector == nil {
			return fmt.Errorf("flux: aggregate %q: snapshot state %v has fields marked as personal data (pii tags) but Config.Protector is nil; configure pii.New so they are encrypted", name, state)
		}
		if c, ok := r.cfg.Protector.(interface{ CheckType(reflect.Type) error }); ok {
			if err := c.CheckType(state); err != nil {
				return fmt.Errorf("flux: aggregate %q: snapshot state %v cannot be protected: %w", name, state, err)
			}
		}
	}
	return nil
}

// snapshotStateType returns the Go type SnapshotState returns for a new
// aggregate of def (nil when it returns nil).
func snapshotStateType(def *aggregateDef) (t reflect.Type, err error) {
	a, err := def.new()
	if err != nil {
		return nil, err
	}
	s, ok := a.(Snapshotter)
	if !ok {
		return nil, nil
	}
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("flux: aggregate %q: SnapshotState panicked on a new aggregate (%v); it must work on an empty aggregate so its state type can be checked at start-up", def.name, p)
		}
	}()
	if st := s.SnapshotState(); st != nil {
		return reflect.TypeOf(st), nil
	}
	return nil, nil
}

// Store returns the repository's event store.
func (r *Repository) Store() EventStore { return r.store }

// Registry returns the repository's registry.
func (r *Repository) Registry() *Registry { return r.reg }

// Observer returns the repository's observer (nil when none).
func (r *Repository) Observer() Observer { return r.cfg.Observer }

// Save appends the pending events of every aggregate in one atomic
// transaction: either all are stored or none. Each aggregate's stream must
// still be at the version it was loaded at; otherwise Save returns a
// *ConflictError (matching ErrConcurrencyConflict) and stores nothing.
// Aggregates without pending events are skipped. After a successful save
// the aggregates' pending events are cleared; after a failed one they are
// kept, and the aggregates should be reloaded before retrying.
//
// Events are stamped with the metadata carried by ctx (WithRequestID,
// WithCorrelationID, WithCausationID, WithMetadata). Without a correlation
// ID the request ID is used, or else the first event's ID, so the events of
// one save always share one.
//
// Inside a command handler run by a CommandBus, Save joins the command's
// unit of work instead: the aggregates are saved with every other one the
// command touched, atomically, when the handler returns.
//
// With a Publisher configured, the saved events are then published; if an
// event handler fails, Save returns a *PublishError (matching ErrPublish):
// the events are stored all the same.
func (r *Repository) Save(ctx context.Context, aggs ...Aggregate) error {
	if u := uowFrom(ctx); u != nil && u.repo == r {
		return u.track(aggs...)
	}
	return r.save(ctx, aggs, nil)
}

// save appends the aggregates' pending events (and the idempotency record,
// when set) in one transaction, then publishes them.
func (r *Repository) save(ctx context.Context, aggs []Aggregate, idem *IdempotencyRecord) (err error) {
	obs := r.cfg.Observer
	var end func(Outcome)
	var out Outcome
	if obs != nil {
		op := Operation{Kind: OpSave, CorrelationID: MetadataFrom(ctx).CorrelationID}
		if len(aggs) == 1 && !isNilAggregate(aggs[0]) {
			op.StreamID = aggs[0].ID()
			if d, derr := r.reg.aggregateDefFor(aggs[0]); derr == nil {
				op.AggregateType = d.name
			}
		}
		for _, a := range aggs {
			if !isNilAggregate(a) {
				op.Events += len(a.PendingEvents())
			}
		}
		ctx, end = obs.Start(ctx, op)
		defer func() {
			out.Err, out.Conflict = err, errors.Is(err, ErrConcurrencyConflict)
			end(out)
		}()
	}
	req, roots, err := r.prepare(ctx, aggs)
	if err != nil {
		return err
	}
	req.Idempotency = idem
	if len(req.Streams) == 0 && idem == nil {
		return nil
	}
	var published []Envelope
	if r.cfg.Publisher != nil {
		published = pendingEnvelopes(req, roots)
	}
	res, err := r.append(ctx, req)
	if err != nil {
		return err
	}
	out.SnapshotsWritten = len(req.Snapshots)
	for _, root := range roots {
		root.markSaved()
	}
	for _, w := range req.Snapshots {
		for _, root := range roots {
			if root.id == w.StreamID {
				root.snapshotVersion = w.Version
			}
		}
	}
	if len(published) == 0 {
		return nil
	}
	for i := range published {
		published[i].Position = res.Positions[i]
		if i < len(res.OccurredAt) {
			published[i].OccurredAt = res.OccurredAt[i]
		}
	}
	return r.cfg.Publisher.Publish(withoutUnitOfWork(ctx), published)
}

// append runs the store append, observed.
func (r *Repository) append(ctx context.Context, req AppendRequest) (AppendResult, error) {
	if r.cfg.Observer == nil {
		return r.store.Append(ctx, req)
	}
	n := 0
	for _, st := range req.Streams {
		n += len(st.Events)
	}
	op := Operation{Kind: OpAppend, Events: n, CorrelationID: MetadataFrom(ctx).CorrelationID}
	if len(req.Streams) == 1 {
		op.StreamID, op.AggregateType = req.Streams[0].StreamID, req.Streams[0].AggregateType
	}
	actx, end := r.cfg.Observer.Start(ctx, op)
	res, err := r.store.Append(actx, req)
	end(Outcome{Err: err, Conflict: errors.Is(err, ErrConcurrencyConflict)})
	return res, err
}

// pendingEnvelopes builds, before the append, the envelopes of the events
// about to be stored (positions are filled in after it).
func pendingEnvelopes(req AppendRequest, roots []*Root) []Envelope {
	var out []Envelope
	for i, st := range req.Streams {
		root := roots[i]
		for j, e := range st.Events {
			out = append(out, Envelope{
				Record: Record{
					StreamID: st.StreamID, StreamVersion: root.committedVersion() + int64(j) + 1, AggregateType: st.AggregateType,
					EventID: e.EventID, EventName: e.EventName, EventVersion: e.EventVersion,
					Payload: e.Payload, Metadata: e.Metadata, OccurredAt: e.OccurredAt,
				},
				Event: root.pending[j], Name: e.EventName, Version: e.EventVersion,
			})
		}
	}
	return out
}

func (r *Repository) prepare(ctx context.Context, aggs []Aggregate) (AppendRequest, []*Root, error) {
	var req AppendRequest
	var roots []*Root
	now := NormalizeTime(r.cfg.Clock())
	md := MetadataFrom(ctx)
	if md.RequestID == "" {
		md.RequestID = DefaultRequestID
	}
	if obs := r.cfg.Observer; obs != nil {
		if extra := obs.TraceMetadata(ctx); len(extra) > 0 {
			merged := make(map[string]string, len(md.Extra)+len(extra))
			maps.Copy(merged, md.Extra)
			maps.Copy(merged, extra)
			md.Extra = merged
		}
	}
	for i, a := range aggs {
		def, err := r.reg.aggregateDefFor(a)
		if err != nil {
			return req, nil, fmt.Errorf("save aggregate %d: %w", i, err)
		}
		root := a.root()
		if len(root.pending) == 0 {
			continue
		}
		if err := ValidateStreamID(root.id); err != nil {
			return req, nil, fmt.Errorf("save %s: %w", def.name, err)
		}
		for _, prev := range roots {
			if prev == root {
				return req, nil, errorf(ErrInvalidAppend, "aggregate %s %q passed to Save twice", def.name, root.id)
			}
		}
		s := StreamAppend{
			StreamID:      root.id,
			AggregateType: def.name,
			Expected:      ExpectedVersion(root.committedVersion()),
			Events:        make([]EventData, len(root.pending)),
		}
		for j, ev := range root.pending {
			ed, err := r.reg.eventDefFor(ev)
			if err != nil {
				return req, nil, fmt.Errorf("save %s %q: %w", def.name, root.id, err)
			}
			if ed.agg != def {
				return req, nil, errorf(ErrUnknownEvent, "save %s %q: event %s belongs to aggregate type %s", def.name, root.id, ed.name, ed.agg.name)
			}
			payload, err := json.Marshal(ev)
			if err != nil {
				return req, nil, fmt.Errorf("save %s %q: encode event %s: %w", def.name, root.id, ed.name, err)
			}
			id := r.cfg.NewID()
			if ed.hasPII {
				if payload, err = r.cfg.Protector.Protect(ctx, ev, payload, "event:"+id); err != nil {
					r.noticePII(ctx, "encrypt", ed.name, err)
					return req, nil, fmt.Errorf("save %s %q: event %s: %w", def.name, root.id, ed.name, err)
				}
			}
			if md.CorrelationID == "" {
				md.CorrelationID = md.RequestID
				if md.CorrelationID == DefaultRequestID {
					md.CorrelationID = id
				}
			}
			s.Events[j] = EventData{
				EventID:      id,
				EventName:    ed.name,
				EventVersion: ed.version,
				Payload:      payload,
				Metadata:     md,
				OccurredAt:   now,
			}
		}
		req.Streams = append(req.Streams, s)
		roots = append(roots, root)
		if p := def.snapshot; p != nil && root.version-root.snapshotVersion >= int64(p.Every) {
			w, ok, err := r.snapshotOf(ctx, def, a, now)
			if err != nil {
				return req, nil, err
			}
			if ok {
				req.Snapshots = append(req.Snapshots, w)
			}
		}
	}
	return req, roots, nil
}

// snapshotOf encodes the aggregate's state as a snapshot at its version,
// and reports false when none is to be written (its subject was forgotten).
func (r *Repository) snapshotOf(ctx context.Context, def *aggregateDef, a Aggregate, now time.Time) (SnapshotWrite, bool, error) {
	root := a.root()
	state := a.(Snapshotter).SnapshotState()
	var st reflect.Type
	if state != nil {
		st = reflect.TypeOf(state)
	}
	if err := checkSnapshotStateCached(def, st); err != nil {
		return SnapshotWrite{}, false, fmt.Errorf("save %s %q: snapshot at version %d: %w", def.name, root.id, root.version, err)
	}
	data, err := json.Marshal(state)
	if err != nil {
		return SnapshotWrite{}, false, fmt.Errorf("save %s %q: encode snapshot at version %d: %w", def.name, root.id, root.version, err)
	}
	if st != nil && HasPersonalData(st) {
		if r.cfg.Protector == nil {
			return SnapshotWrite{}, false, fmt.Errorf("save %s %q: the snapshot state %T has personal data fields but Config.Protector is nil", def.name, root.id, state)
		}
		if data, err = r.cfg.Protector.Protect(ctx, state, data, snapshotScope(root.id, root.version)); err != nil {
			if errors.Is(err, ErrSubjectForgotten) {
				// A snapshot is a cache: the state of a forgotten subject
				// holds replacement values, and storing it would need a
				// key the subject no longer has. Loads keep using the
				// older snapshot (unreadable now) and the events.
				r.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "flux: no snapshot of a forgotten subject's aggregate",
					slog.String("aggregate_type", def.name), slog.String("stream", root.id), slog.Int64("version", root.version))
				return SnapshotWrite{}, false, nil
			}
			return SnapshotWrite{}, false, fmt.Errorf("save %s %q: snapshot at version %d: %w", def.name, root.id, root.version, err)
		}
	}
	return SnapshotWrite{
		Snapshot: Snapshot{
			StreamID: root.id, AggregateType: def.name, Version: root.version,
			SchemaVersion: def.snapshot.Schema, Data: data, CreatedAt: now,
		},
		Keep: def.snapshot.Keep,
	}, true, nil
}

// LoadOptions select which state of an aggregate a load rebuilds. The zero
// value loads the current state.
type LoadOptions struct {
	// At, when set, rebuilds the aggregate as it was at that moment: from
	// the events that occurred at or before it. Stored times follow the
	// log (see StampTimes), so the answer for a time t never changes once
	// the log holds an event later than t; snapshots, Events and a replay
	// give the same answer.
	At time.Time
	// Version, when positive, rebuilds the aggregate as it was at that
	// stream version.
	Version int64
}

// Load rebuilds the aggregate with the given ID from its events. It returns
// an error matching ErrAggregateNotFound when the stream has no events, and
// ErrAggregateTypeMismatch when the stream belongs to another type.
//
//	user, err := flux.Load[*User](ctx, repo, id)
//
// Inside a command handler the loaded aggregate is tracked by the command's
// unit of work and saved when the handler returns; loading it again in the
// same command returns the same instance.
func Load[A Aggregate](ctx context.Context, r *Repository, id string) (A, error) {
	if u := uowFrom(ctx); u != nil && u.repo == r {
		if a, ok := u.lookup(id); ok {
			typed, ok := a.(A)
			if !ok {
				var zero A
				return zero, errorf(ErrAggregateTypeMismatch, "aggregate %q is tracked as %T, not %v", id, a, reflect.TypeFor[A]())
			}
			return typed, nil
		}
		a, err := loadAs[A](ctx, r, id, LoadOptions{})
		if err != nil {
			return a, err
		}
		if err := u.track(a); err != nil {
			var zero A
			return zero, err
		}
		return a, nil
	}
	return loadAs[A](ctx, r, id, LoadOptions{})
}

// LoadAt rebuilds the aggregate as it was at time t: from the events that
// occurred at or before t. It returns an error matching
// ErrAggregateNotFound when the aggregate did not exist yet at t, and
// ErrInvalidArgument, before any I/O, when t is zero.
func LoadAt[A Aggregate](ctx context.Context, r *Repository, id string, t time.Time) (A, error) {
	if t.IsZero() {
		var zero A
		return zero, errorf(ErrInvalidArgument, "LoadAt of stream %q: the time is zero; use Load for the current state", id)
	}
	return loadAs[A](ctx, r, id, LoadOptions{At: t})
}

// LoadVersion rebuilds the aggregate as it was at stream version v (>= 1).
// A version below 1 gives an error matching ErrInvalidArgument, before any
// I/O.
func LoadVersion[A Aggregate](ctx context.Context, r *Repository, id string, v int64) (A, error) {
	if v < 1 {
		var zero A
		return zero, errorf(ErrInvalidArgument, "LoadVersion of stream %q: version %d, want >= 1 (the first event is version 1)", id, v)
	}
	return loadAs[A](ctx, r, id, LoadOptions{Version: v})
}

func loadAs[A Aggregate](ctx context.Context, r *Repository, id string, opts LoadOptions) (A, error) {
	var zero A
	def, err := r.reg.aggregateDefOf(reflect.TypeFor[A]())
	if err != nil {
		return zero, err
	}
	a, err := r.load(ctx, def, id, opts)
	if err != nil {
		return zero, err
	}
	return a.(A), nil
}

// LoadAggregate is the untyped form of Load, for tools that know the
// aggregate type only by name.
func (r *Repository) LoadAggregate(ctx context.Context, aggregateType, id string, opts LoadOptions) (Aggregate, error) {
	def, ok := r.reg.aggregates[aggregateType]
	if !ok {
		return nil, errorf(ErrUnknownAggregate, "aggregate type %q is not registered", aggregateType)
	}
	return r.load(ctx, def, id, opts)
}

func (r *Repository) load(ctx context.Context, def *aggregateDef, id string, opts LoadOptions) (a Aggregate, err error) {
	if obs := r.cfg.Observer; obs != nil {
		var end func(Outcome)
		ctx, end = obs.Start(ctx, Operation{Kind: OpLoad, AggregateType: def.name, StreamID: id, CorrelationID: MetadataFrom(ctx).CorrelationID})
		defer func() {
			out := Outcome{Err: err}
			if a != nil {
				info := a.root().loaded
				out.EventsReplayed, out.SnapshotUsed = info.EventsReplayed, info.SnapshotVersion > 0
			}
			end(out)
		}()
	}
	return r.loadAggregate(ctx, def, id, opts)
}

func (r *Repository) loadAggregate(ctx context.Context, def *aggregateDef, id string, opts LoadOptions) (Aggregate, error) {
	if err := ValidateStreamID(id); err != nil {
		return nil, err
	}
	a, err := def.new()
	if err != nil {
		return nil, err
	}
	root := a.root()
	root.id = id
	var info LoadInfo
	if def.snapshot != nil && r.snapshots != nil {
		restored, rejected, err := r.restoreSnapshot(ctx, def, a, opts, &info)
		if err != nil {
			return nil, err
		}
		if rejected {
			info.SnapshotRejected = true
			if a, err = def.new(); err != nil {
				return nil, err
			}
			root = a.root()
			root.id = id
		} else if restored {
			info.SnapshotVersion = root.version
		}
	}
	read := ReadStreamOptions{FromVersion: root.version + 1, ToVersion: opts.Version}
	for rec, err := range r.store.ReadStream(ctx, id, read) {
		if err != nil {
			return nil, fmt.Errorf("load %s %q: %w", def.name, id, err)
		}
		if !opts.At.IsZero() && rec.OccurredAt.After(opts.At) {
			break // history is a prefix: stop at the first later event
		}
		if rec.AggregateType != def.name {
			return nil, errorf(ErrAggregateTypeMismatch, "stream %q holds aggregate type %s, not %s", id, rec.AggregateType, def.name)
		}
		if rec.StreamVersion != root.version+1 {
			return nil, eventError(&rec, fmt.Errorf("%w: stream version %d follows %d", ErrCorruptEvent, rec.StreamVersion, root.version))
		}
		ev, _, forgotten, err := r.decodeEvent(ctx, &rec)
		if err != nil {
			return nil, err
		}
		if len(forgotten) > 0 {
			info.Forgotten = true
		}
		a.Apply(ev)
		root.version = rec.StreamVersion
		info.EventsReplayed++
	}
	if root.version == 0 {
		return nil, notFound(def.name, id, opts)
	}
	if opts.Version > 0 && root.version < opts.Version {
		return nil, errorf(ErrAggregateNotFound, "%s %q has %d events, no version %d", def.name, id, root.version, opts.Version)
	}
	root.loaded = info
	root.snapshotVersion = info.SnapshotVersion
	return a, nil
}

// restoreSnapshot restores a from the newest snapshot usable for opts. It
// reports whether one was restored, and whether one was found but could
// not be restored (a is then in an unknown state and must be rebuilt).
func (r *Repository) restoreSnapshot(ctx context.Context, def *aggregateDef, a Aggregate, opts LoadOptions, info *LoadInfo) (restored, rejected bool, err error) {
	root := a.root()
	sn, ok, err := r.snapshots.LoadSnapshot(ctx, root.id, SnapshotQuery{
		SchemaVersion: def.snapshot.Schema, MaxVersion: opts.Version, Until: opts.At,
	})
	if err != nil {
		return false, false, fmt.Errorf("load %s %q: snapshot: %w", def.name, root.id, err)
	}
	if !ok {
		return false, false, nil
	}
	if sn.AggregateType != def.name {
		return false, false, errorf(ErrAggregateTypeMismatch, "stream %q has a snapshot of aggregate type %s, not %s", root.id, sn.AggregateType, def.name)
	}
	var decodeErr error
	decode := func(v any) error {
		if r.cfg.Protector == nil || v == nil || !HasPersonalData(reflect.TypeOf(v)) {
			return json.Unmarshal(sn.Data, v)
		}
		forgotten, err := r.cfg.Protector.Unprotect(ctx, sn.Data, v, snapshotScope(root.id, sn.Version))
		if len(forgotten) > 0 {
			info.Forgotten = true
		}
		decodeErr = err
		return err
	}
	if err := a.(Snapshotter).RestoreSnapshot(decode); err != nil {
		if errors.Is(decodeErr, ErrPersonalData) {
			r.noticePII(ctx, "decrypt", def.name+" snapshot", decodeErr)
			// Personal data that fails to decrypt (tampering, a wrong
			// secret) is an error, not a reason to fall back silently.
			return false, false, fmt.Errorf("load %s %q: snapshot at version %d: %w", def.name, root.id, sn.Version, decodeErr)
		}
		// A snapshot is a cache: fall back to replaying every event.
		r.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "flux: snapshot not restored; replaying all events",
			slog.String("aggregate_type", def.name), slog.String("stream", root.id),
			slog.Int64("snapshot_version", sn.Version), slog.String("error", err.Error()))
		return false, true, nil
	}
	root.version = sn.Version
	return true, false, nil
}

func notFound(aggType, id string, opts LoadOptions) error {
	switch {
	case !opts.At.IsZero():
		return errorf(ErrAggregateNotFound, "%s %q has no events at or before %s", aggType, id, opts.At.UTC().Format(time.RFC3339Nano))
	default:
		return errorf(ErrAggregateNotFound, "%s %q has no events", aggType, id)
	}
}

// decode runs the read pipeline for one record: upcast to the current
// version, then decode into the registered Go type.
// Personal data is decrypted last; fields of forgotten subjects are
// listed.
func (r *Repository) decodeEvent(ctx context.Context, rec *Record) (ev any, d *eventDef, forgotten []string, err error) {
	res, err := r.reg.resolve(rec)
	if err != nil {
		return nil, nil, nil, err
	}
	defer res.release()
	d = res.d
	if obs := r.cfg.Observer; obs != nil && (d.version != rec.EventVersion || d.name != rec.EventName) {
		obs.Notice(ctx, Notice{Kind: NoticeUpcast, Event: d.name, FromVersion: rec.EventVersion, ToVersion: d.version})
	}
	if !d.hasPII || r.cfg.Protector == nil {
		ev, err := res.decode(rec)
		return ev, d, nil, err
	}
	target := reflect.New(d.typ)
	forgotten, err = r.cfg.Protector.Unprotect(ctx, res.bytes(), target.Interface(), "event:"+rec.EventID)
	if err != nil {
		if errors.Is(err, ErrPersonalData) {
			r.noticePII(ctx, "decrypt", d.name, err)
		} else {
			err = fmt.Errorf("%w: decode into %v: %v", ErrCorruptEvent, d.typ, jsonErrorWithoutValue(err))
		}
		return nil, nil, nil, eventError(rec, err)
	}
	return target.Elem().Interface(), d, forgotten, nil
}

func (r *Repository) noticePII(ctx context.Context, op, event string, err error) {
	if obs := r.cfg.Observer; obs != nil {
		obs.Notice(ctx, Notice{Kind: NoticePersonalData, Op: op, Event: event, Reason: failureReason(err)})
	}
}

func snapshotScope(streamID string, version int64) string {
	return "snapshot:" + streamID + "@" + strconv.FormatInt(version, 10)
}

// EventsOptions filter Repository.Events. The zero value reads the whole
// stream.
type EventsOptions struct {
	// Types keeps only events of these registered Go types, given as
	// values: []any{UserRenamed{}}.
	Types []any
	// Names keeps only events with these registered names.
	Names []string
	// Since and Until bound the occurred-at time, inclusive. Until ends
	// the stream at its first later event, so Events with Until: t yields
	// exactly the events LoadAt(t) applies.
	Since, Until time.Time
	// FromVersion and ToVersion bound the stream version, inclusive.
	FromVersion, ToVersion int64
}

// Events streams the decoded events of one stream, oldest first, filtered
// by opts (nil reads everything): the PHP library's loadByDomainEvents. The
// stream is read with one cursor, never loaded whole; break out of the loop
// to stop early. A stream with no matching events yields nothing.
func (r *Repository) Events(ctx context.Context, streamID string, opts *EventsOptions) iter.Seq2[Envelope, error] {
	return func(yield func(Envelope, error) bool) {
		if opts == nil {
			opts = &EventsOptions{}
		}
		if err := ValidateStreamID(streamID); err != nil {
			yield(Envelope{}, err)
			return
		}
		names, err := r.filterNames(opts.Types, opts.Names)
		if err != nil {
			yield(Envelope{}, err)
			return
		}
		read := ReadStreamOptions{
			FromVersion: opts.FromVersion, ToVersion: opts.ToVersion,
			Since: opts.Since, EventNames: names,
		}
		records := r.store.ReadStream(ctx, streamID, read)
		if until := opts.Until; !until.IsZero() {
			// History is a prefix, as for LoadAt: stop at the first later
			// event (the same thing once times follow the log, and the
			// same answer as LoadAt for events stored before they did).
			records = func(yield func(Record, error) bool) {
				for rec, err := range r.store.ReadStream(ctx, streamID, read) {
					if err == nil && rec.OccurredAt.After(until) {
						return
					}
					if !yield(rec, err) {
						return
					}
				}
			}
		}
		r.decodeAll(ctx, records, yield)
	}
}

// AllEvents streams the decoded global log in commit order, filtered by
// opts: the input of projections and tools. opts.EventNames are registered
// (current) names; events stored under older names of those events are
// included and upcast.
func (r *Repository) AllEvents(ctx context.Context, opts ReadAllOptions) iter.Seq2[Envelope, error] {
	return func(yield func(Envelope, error) bool) {
		if len(opts.EventNames) > 0 {
			names, err := r.filterNames(nil, opts.EventNames)
			if err != nil {
				yield(Envelope{}, err)
				return
			}
			opts.EventNames = names
		}
		r.decodeAll(ctx, r.store.ReadAll(ctx, opts), yield)
	}
}

func (r *Repository) decodeAll(ctx context.Context, records iter.Seq2[Record, error], yield func(Envelope, error) bool) {
	for rec, err := range records {
		if err != nil {
			yield(Envelope{}, err)
			return
		}
		ev, d, forgotten, err := r.decodeEvent(ctx, &rec)
		if err != nil {
			yield(Envelope{}, err)
			return
		}
		if !yield(Envelope{Record: rec, Event: ev, Name: d.name, Version: d.version, Forgotten: forgotten}, nil) {
			return
		}
	}
}

func (r *Repository) filterNames(types []any, names []string) ([]string, error) {
	if len(types) == 0 && len(names) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(types)+len(names))
	for _, t := range types {
		d, err := r.reg.eventDefFor(t)
		if err != nil {
			return nil, err
		}
		out = append(out, r.reg.StoredNames(d.name)...)
	}
	for _, n := range names {
		if _, ok := r.reg.events[n]; !ok {
			return nil, errorf(ErrUnknownEvent, "event name %q is not registered", n)
		}
		out = append(out, r.reg.StoredNames(n)...)
	}
	return out, nil
}

// NewAggregate returns a new, empty aggregate of type A with its ID set,
// built by the constructor registered for A.
func NewAggregate[A Aggregate](reg *Registry, id string) (A, error) {
	var zero A
	def, err := reg.aggregateDefOf(reflect.TypeFor[A]())
	if err != nil {
		return zero, err
	}
	a, err := def.new()
	if err != nil {
		return zero, err
	}
	a.root().id = id
	return a.(A), nil
}

// Decode runs the read pipeline on one stored record — upcasting,
// decryption, decoding — as every read path does. Subscriptions use it.
func (r *Repository) Decode(ctx context.Context, rec Record) (Envelope, error) {
	ev, d, forgotten, err := r.decodeEvent(ctx, &rec)
	if err != nil {
		return Envelope{}, err
	}
	return Envelope{Record: rec, Event: ev, Name: d.name, Version: d.version, Forgotten: forgotten}, nil
}

// Matches reports whether a stored record passes a filter of registered
// event names (older stored names of those events included) and aggregate
// types, without decoding it. Empty lists match everything.
func (r *Registry) Matches(rec *Record, eventNames, aggregateTypes []string) bool {
	if len(aggregateTypes) > 0 && !containsString(aggregateTypes, rec.AggregateType) {
		return false
	}
	if len(eventNames) == 0 {
		return true
	}
	for _, n := range eventNames {
		if n == rec.EventName || containsString(r.storedNames[n], rec.EventName) {
			return true
		}
	}
	return false
}
