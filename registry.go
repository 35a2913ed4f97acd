package flux

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"

	"github.com/fluxcapacitor/flux/internal/fastjson"
)

// Registry maps stored names to Go types: aggregate type names to
// constructors, event names and schema versions to event types, and each
// event to the aggregate type that owns it (the PHP library's
// event_mappings.yaml). Stored names never depend on Go type names, so
// renaming a Go type never breaks old data.
//
// Build one with NewRegistry when the application starts; there is no
// global registry. A Registry is immutable and safe for concurrent use.
type Registry struct {
	aggregates  map[string]*aggregateDef
	aggByType   map[reflect.Type]*aggregateDef
	events      map[string]*eventDef // by current stored name
	evByType    map[reflect.Type]*eventDef
	upcasts     map[nameVersion]*upcastChain
	storedNames map[string][]string // current name -> older stored names
	stored      map[nameVersion]storedAs
}

type aggregateDef struct {
	name     string
	typ      reflect.Type
	newFn    func() Aggregate
	events   []*eventDef
	snapshot *SnapshotPolicy // nil: no snapshots
	// snapshotSet records that a Snapshots option configured the policy.
	snapshotSet bool
}

type eventDef struct {
	name    string
	version int
	typ     reflect.Type
	agg     *aggregateDef
	decode  func(payload []byte) (any, error)
	// decodeFields decodes an upcast Payload as it stands (nil: encode
	// it and decode the bytes).
	decodeFields func(*Payload) (any, error)
	hasPII       bool // fields tagged pii:"data"
}

// Definition is one entry of a registry: see AggregateType.
type Definition interface {
	define(b *registryBuilder)
}

// AggregateOption configures an aggregate type: its events (EventType).
type AggregateOption interface {
	applyAggregate(b *registryBuilder, a *aggregateDef)
}

// NewRegistry builds a registry from definitions. It checks them all and
// returns every problem at once, joined, matching ErrInvalidRegistry: a
// name or Go type registered twice, an event type that is not a struct, an
// aggregate type whose constructor returns nil.
//
//	reg, err := flux.NewRegistry(
//		flux.AggregateType("User", func() *User { return new(User) },
//			flux.EventType[UserRegistered]("UserRegistered", 1),
//			flux.EventType[UserRenamed]("UserRenamed", 1),
//		),
//	)
func NewRegistry(defs ...Definition) (*Registry, error) {
	b := &registryBuilder{reg: &Registry{
		aggregates:  make(map[string]*aggregateDef),
		aggByType:   make(map[reflect.Type]*aggregateDef),
		events:      make(map[string]*eventDef),
		evByType:    make(map[reflect.Type]*eventDef),
		upcasts:     make(map[nameVersion]*upcastChain),
		storedNames: make(map[string][]string),
	}}
	for _, d := range append([]Definition{personalDataDefinition()}, defs...) {
		if d == nil {
			b.fail("nil definition")
			continue
		}
		d.define(b)
	}
	b.checkStoredKeys()
	if len(b.errs) > 0 {
		return nil, errors.Join(b.errs...)
	}
	r := b.reg
	r.stored = make(map[nameVersion]storedAs, len(r.events)+len(r.upcasts))
	for name, d := range r.events {
		r.stored[nameVersion{name, d.version}] = storedAs{current: d}
	}
	for k, c := range r.upcasts {
		r.stored[k] = storedAs{chain: c}
	}
	return r, nil
}

// storedAs is what a stored (name, version) reads as: a current event
// type, or an upcaster chain to one.
type storedAs struct {
	current *eventDef
	chain   *upcastChain
}

type registryBuilder struct {
	reg  *Registry
	errs []error
}

func (b *registryBuilder) fail(format string, args ...any) {
	b.errs = append(b.errs, errorf(ErrInvalidRegistry, format, args...))
}

type aggregateDefinition struct {
	name  string
	typ   reflect.Type
	newFn func() Aggregate
	opts  []AggregateOption
}

func (d *aggregateDefinition) define(b *registryBuilder) {
	if err := validateName("aggregate type", d.name); err != nil {
		b.fail("aggregate %v: %v", d.typ, err)
		return
	}
	if d.typ.Kind() != reflect.Pointer || d.typ.Elem().Kind() != reflect.Struct {
		b.fail("aggregate %q: Go type %v must be a pointer to a struct embedding flux.Root", d.name, d.typ)
		return
	}
	if d.newFn == nil || d.newFn() == nil {
		b.fail("aggregate %q: constructor is nil or returns nil", d.name)
		return
	}
	if _, dup := b.reg.aggregates[d.name]; dup {
		b.fail("aggregate type %q registered twice", d.name)
		return
	}
	if prev, dup := b.reg.aggByType[d.typ]; dup {
		b.fail("Go type %v registered as aggregate %q and %q", d.typ, prev.name, d.name)
		return
	}
	a := &aggregateDef{name: d.name, typ: d.typ, newFn: d.newFn}
	b.reg.aggregates[d.name] = a
	b.reg.aggByType[d.typ] = a
	for _, o := range d.opts {
		if o == nil {
			b.fail("aggregate %q: nil option", d.name)
			continue
		}
		o.applyAggregate(b, a)
	}
	if !a.snapshotSet && a.typ.Implements(reflect.TypeFor[Snapshotter]()) {
		p := SnapshotPolicy{}.withDefaults()
		a.snapshot = &p
	}
}

// AggregateType defines an aggregate type stored under name, built by newFn
// (which must return a new, empty aggregate each call), with its events and
// options. A must be a pointer to a struct embedding Root.
func AggregateType[A Aggregate](name string, newFn func() A, opts ...AggregateOption) Definition {
	d := &aggregateDefinition{name: name, typ: reflect.TypeFor[A](), opts: opts}
	if newFn != nil {
		d.newFn = func() Aggregate {
			a := newFn()
			if isNilAggregate(a) {
				return nil
			}
			return a
		}
	}
	return d
}

// EventType defines an event owned by the aggregate type it is passed to:
// Go type E (a struct, raised and applied by value) is stored under name
// with schema version version (>= 1). Payloads are JSON; use json struct
// tags to fix field names. Options add upcasters for older versions
// (Upcast, UpcastRenamed).
func EventType[E any](name string, version int, opts ...EventOption) AggregateOption {
	plan := fastjson.For(reflect.TypeFor[E]()) // nil: encoding/json decodes E
	d := &eventDefinition{
		name:    name,
		version: version,
		typ:     reflect.TypeFor[E](),
		decode: func(payload []byte) (any, error) {
			var e E
			var err error
			if plan != nil {
				err = plan.Decode(payload, reflect.ValueOf(&e).Elem())
			} else {
				err = json.Unmarshal(payload, &e)
			}
			if err != nil {
				return nil, err
			}
			return e, nil
		},
	}
	if plan != nil {
		d.decodeFields = func(p *Payload) (any, error) {
			var e E
			if err := plan.DecodeFields(reflect.ValueOf(&e).Elem(), p.fields); err != nil {
				return nil, err
			}
			return e, nil
		}
	}
	for _, o := range opts {
		if o != nil {
			o.applyEvent(d)
		}
	}
	return d
}

type eventDefinition struct {
	name    string
	version int
	typ     reflect.Type
	decode  func([]byte) (any, error)
	// decodeFields decodes an upcast payload without encoding it first;
	// nil when E needs encoding/json.
	decodeFields func(*Payload) (any, error)
	steps        []upcastStep
}

func (d *eventDefinition) applyAggregate(b *registryBuilder, a *aggregateDef) {
	if d.typ.Kind() != reflect.Struct {
		b.fail("event %q: Go type %v is a %s, want a struct (register the value type, not a pointer)", d.name, d.typ, d.typ.Kind())
		return
	}
	if err := validateName("event name", d.name); err != nil {
		b.fail("event %v: %v", d.typ, err)
		return
	}
	if d.version < 1 {
		b.fail("event %q: schema version %d, want >= 1", d.name, d.version)
		return
	}
	if prev, dup := b.reg.events[d.name]; dup {
		b.fail("event name %q registered twice (aggregates %q and %q)", d.name, prev.agg.name, a.name)
		return
	}
	if prev, dup := b.reg.evByType[d.typ]; dup {
		b.fail("Go type %v registered as event %q and %q", d.typ, prev.name, d.name)
		return
	}
	e := &eventDef{name: d.name, version: d.version, typ: d.typ, agg: a, decode: d.decode, decodeFields: d.decodeFields, hasPII: HasPersonalData(d.typ)}
	b.reg.events[d.name] = e
	b.reg.evByType[d.typ] = e
	a.events = append(a.events, e)
	b.buildUpcasts(e, d.steps)
}

// EventName returns the stored name and schema version of event, which must
// be a value of a registered event type.
func (r *Registry) EventName(event any) (name string, version int, err error) {
	d, err := r.eventDefFor(event)
	if err != nil {
		return "", 0, err
	}
	return d.name, d.version, nil
}

func (r *Registry) eventDefFor(event any) (*eventDef, error) {
	if event == nil {
		return nil, errorf(ErrUnknownEvent, "event is nil")
	}
	t := reflect.TypeOf(event)
	if d, ok := r.evByType[t]; ok {
		return d, nil
	}
	if t.Kind() == reflect.Pointer {
		if d, ok := r.evByType[t.Elem()]; ok {
			return nil, errorf(ErrUnknownEvent, "event %v is a pointer; raise %s values, not pointers", t, d.typ)
		}
	}
	return nil, errorf(ErrUnknownEvent, "Go type %v is not registered; add flux.EventType[%v](name, version) to its aggregate type", t, t)
}

// AggregateTypeOf returns the aggregate type name that owns the event with
// the given stored name (event_to_aggregate), or "" if it is unknown.
func (r *Registry) AggregateTypeOf(eventName string) string {
	if d, ok := r.events[eventName]; ok {
		return d.agg.name
	}
	return ""
}

// AggregateTypes returns the registered aggregate type names, sorted; the
// built-in PersonalDataAggregate is left out.
func (r *Registry) AggregateTypes() []string {
	names := make([]string, 0, len(r.aggregates))
	for n := range r.aggregates {
		if n != PersonalDataAggregate {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// EventNames returns the registered event names, sorted. With an aggregate
// type name it returns only that aggregate's events. Without one the
// built-in SubjectForgottenEvent is left out.
func (r *Registry) EventNames(aggregateType ...string) []string {
	var names []string
	for n, d := range r.events {
		if (len(aggregateType) == 0 && d.agg.name != PersonalDataAggregate) || slices.Contains(aggregateType, d.agg.name) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// New returns a new, empty aggregate of the named type.
func (r *Registry) New(aggregateType string) (Aggregate, error) {
	d, ok := r.aggregates[aggregateType]
	if !ok {
		return nil, errorf(ErrUnknownAggregate, "aggregate type %q is not registered", aggregateType)
	}
	return d.new()
}

func (d *aggregateDef) new() (Aggregate, error) {
	if d.newFn == nil {
		return nil, errorf(ErrUnknownAggregate, "aggregate type %q has no constructor", d.name)
	}
	a := d.newFn()
	if a == nil {
		return nil, errorf(ErrUnknownAggregate, "constructor of aggregate type %q returned nil", d.name)
	}
	return a, nil
}

func (r *Registry) aggregateDefFor(a Aggregate) (*aggregateDef, error) {
	if isNilAggregate(a) {
		return nil, errorf(ErrUnknownAggregate, "aggregate is nil")
	}
	t := reflect.TypeOf(a)
	if d, ok := r.aggByType[t]; ok {
		return d, nil
	}
	return nil, errorf(ErrUnknownAggregate, "Go type %v is not registered; add flux.AggregateType(name, constructor, ...) to the registry", t)
}

func (r *Registry) aggregateDefOf(t reflect.Type) (*aggregateDef, error) {
	if d, ok := r.aggByType[t]; ok {
		return d, nil
	}
	return nil, errorf(ErrUnknownAggregate, "Go type %v is not registered; add flux.AggregateType(name, constructor, ...) to the registry", t)
}

// Decode turns a stored record's payload into a value of its registered
// event type. Errors are *EventError values naming the stream, version and
// event, matching ErrUnknownEvent or ErrCorruptEvent.
//
// Older versions are upcast first; the record itself is not modified.
func (r *Registry) Decode(rec *Record) (any, error) {
	res, err := r.resolve(rec)
	if err != nil {
		return nil, err
	}
	defer res.release()
	return res.decode(rec)
}

// decodeRecord decodes payload (rec's payload in d's current shape).
func (d *eventDef) decodeRecord(rec *Record, payload []byte) (any, error) {
	ev, err := d.decode(payload)
	if err != nil {
		return nil, eventError(rec, fmt.Errorf("%w: decode into %v: %v", ErrCorruptEvent, d.typ, jsonErrorWithoutValue(err)))
	}
	return ev, nil
}

func eventError(rec *Record, err error) *EventError {
	return &EventError{
		StreamID:      rec.StreamID,
		StreamVersion: rec.StreamVersion,
		Position:      rec.Position,
		EventName:     rec.EventName,
		EventVersion:  rec.EventVersion,
		Err:           err,
	}
}

// jsonErrorWithoutValue keeps the shape of a JSON error (offset, field,
// expected type) and drops anything that could quote the payload.
func jsonErrorWithoutValue(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at offset %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q: JSON %s does not fit Go type %v", typ.Field, typ.Value, typ.Type)
	case errors.Is(err, fastjson.ErrSyntax), errors.Is(err, fastjson.ErrType):
		return err.Error()
	default:
		return "payload does not decode"
	}
}

func isNilAggregate(a Aggregate) bool {
	if a == nil {
		return true
	}
	v := reflect.ValueOf(a)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
