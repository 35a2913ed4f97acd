package flux

import (
	"fmt"
	"sort"
	"sync"
)

// UpcastFunc turns one stored version of an event into the next by editing
// its payload in place. It must be deterministic: it runs on every read and
// the stored data is never rewritten. p is valid only during the call.
type UpcastFunc func(p *Payload) error

// EventOption configures an event type: its upcasters.
type EventOption interface {
	applyEvent(d *eventDefinition)
}

type upcastStep struct {
	name    string // stored name of the version this step reads
	version int    // the version this step reads; it produces version+1
	fn      UpcastFunc
}

func (u upcastStep) applyEvent(d *eventDefinition) { d.steps = append(d.steps, u) }

// Upcast registers fn to turn version fromVersion of the event into
// version fromVersion+1. Chains run in order: an event at version 3 with
// upcasters from 1 and from 2 reads stored v1 payloads through both.
//
//	flux.EventType[UserRegistered]("UserRegistered", 2,
//		flux.Upcast(1, func(p *flux.Payload) error { return p.SetDefault("phoneNumber", "") }),
//	)
func Upcast(fromVersion int, fn UpcastFunc) EventOption {
	return upcastStep{version: fromVersion, fn: fn}
}

// UpcastRenamed registers fn for version fromVersion of the event when it
// was stored under oldName: a rename is an upcaster too. The versions after
// it are read under the next step's name, or the event's current name.
//
//	flux.EventType[UserSignedUp]("UserSignedUp", 2,
//		flux.UpcastRenamed("UserRegistered", 1, func(p *flux.Payload) error { ... }),
//	)
func UpcastRenamed(oldName string, fromVersion int, fn UpcastFunc) EventOption {
	return upcastStep{name: oldName, version: fromVersion, fn: fn}
}

type nameVersion struct {
	name    string
	version int
}

// upcastChain is what reading one stored (name, version) takes: the steps
// to run, in order, and the event type they end at.
type upcastChain struct {
	steps  []upcastStep
	target *eventDef
}

// buildUpcasts checks d's upcasters and records their chains. Steps must
// cover a contiguous run of versions ending at the current version - 1.
func (b *registryBuilder) buildUpcasts(e *eventDef, steps []upcastStep) {
	if len(steps) == 0 {
		return
	}
	sorted := append([]upcastStep(nil), steps...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].version < sorted[j].version })
	for i, st := range sorted {
		if st.fn == nil {
			b.fail("event %q: upcaster from version %d is nil", e.name, st.version)
			return
		}
		if st.version < 1 || st.version >= e.version {
			b.fail("event %q: upcaster from version %d, but the event's versions are 1..%d (an upcaster reads a version below the current one)", e.name, st.version, e.version)
			return
		}
		if i > 0 && sorted[i-1].version == st.version {
			b.fail("event %q: two upcasters from version %d", e.name, st.version)
			return
		}
		if i > 0 && sorted[i-1].version+1 != st.version {
			b.fail("event %q: upcaster chain has a hole: no upcaster from version %d to %d", e.name, sorted[i-1].version+1, sorted[i-1].version+2)
			return
		}
		if st.name == "" {
			sorted[i].name = e.name
		}
		if err := validateName("old event name", sorted[i].name); err != nil {
			b.fail("event %q: %v", e.name, err)
			return
		}
	}
	if last := sorted[len(sorted)-1]; last.version != e.version-1 {
		b.fail("event %q: upcaster chain has a hole: no upcaster from version %d to the current version %d", e.name, last.version+1, e.version)
		return
	}
	for i, st := range sorted {
		b.reg.upcasts[nameVersion{st.name, st.version}] = &upcastChain{steps: sorted[i:], target: e}
		names := b.reg.storedNames[e.name]
		if !containsString(names, st.name) {
			b.reg.storedNames[e.name] = append(names, st.name)
		}
	}
}

// checkStoredKeys fails when one stored (name, version) could mean two
// things: a current event and an upcaster, or two upcasters.
func (b *registryBuilder) checkStoredKeys() {
	seen := make(map[nameVersion]string)
	for _, e := range b.reg.events {
		seen[nameVersion{e.name, e.version}] = e.name
	}
	// Deterministic order for error messages.
	keys := make([]nameVersion, 0, len(b.reg.upcasts))
	for k := range b.reg.upcasts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].name != keys[j].name {
			return keys[i].name < keys[j].name
		}
		return keys[i].version < keys[j].version
	})
	for _, k := range keys {
		owner := b.reg.upcasts[k].target.name
		if prev, dup := seen[k]; dup {
			b.fail("stored event %s v%d is claimed by both %q and an upcaster of %q", k.name, k.version, prev, owner)
			continue
		}
		seen[k] = owner
	}
}

// encoded holds the upcast payloads being decoded: the buffers return to
// encodedPool once decoded (decoders copy what they keep, as
// json.Unmarshaler implementations must).
var encodedPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// releaseEncoded returns a buffer resolve handed out; nil is ignored.
func releaseEncoded(bp *[]byte) {
	if bp == nil || cap(*bp) > 64<<10 {
		return
	}
	*bp = (*bp)[:0]
	encodedPool.Put(bp)
}

// resolved is a stored record's payload in its event type's current
// shape: the stored bytes, or the Payload the upcasters edited.
type resolved struct {
	d       *eventDef
	payload []byte   // the current shape's bytes (set lazily for up)
	up      *Payload // the upcast payload; nil when the record is current
	buf     *[]byte  // encodedPool buffer holding payload, if any
}

// bytes returns the payload as JSON, encoding an upcast one into a pooled
// buffer (valid until release).
func (r *resolved) bytes() []byte {
	if r.up != nil && r.buf == nil {
		r.buf = encodedPool.Get().(*[]byte)
		*r.buf = r.up.appendTo((*r.buf)[:0])
		r.payload = *r.buf
	}
	return r.payload
}

// decode decodes the payload into the event type; an upcast payload goes
// straight from its fields when the type allows.
func (r *resolved) decode(rec *Record) (any, error) {
	if r.up != nil && r.d.decodeFields != nil {
		ev, err := r.d.decodeFields(r.up)
		if err != nil {
			return nil, eventError(rec, fmt.Errorf("%w: decode into %v: %v", ErrCorruptEvent, r.d.typ, jsonErrorWithoutValue(err)))
		}
		return ev, nil
	}
	return r.d.decodeRecord(rec, r.bytes())
}

// release returns the pooled buffers; the payload must not be used after.
func (r *resolved) release() {
	if r.up != nil {
		ReleasePayload(r.up)
	}
	releaseEncoded(r.buf)
}

// resolve finds the event type of a stored record and, through its
// upcasters, the payload in that type's current shape. Call release on
// the result once it is decoded.
func (r *Registry) resolve(rec *Record) (resolved, error) {
	as := r.stored[nameVersion{rec.EventName, rec.EventVersion}]
	if as.current != nil {
		return resolved{d: as.current, payload: rec.Payload}, nil
	}
	chain := as.chain
	if chain == nil {
		if d, known := r.events[rec.EventName]; known {
			return resolved{}, eventError(rec, errorf(ErrUnknownEvent, "stored schema version %d, registered version %d, and no upcaster from it", rec.EventVersion, d.version))
		}
		return resolved{}, eventError(rec, errorf(ErrUnknownEvent, "no event type is registered under this name and version"))
	}
	p := payloadPool.Get().(*Payload)
	if err := p.parse(rec.Payload); err != nil {
		ReleasePayload(p)
		return resolved{}, eventError(rec, fmt.Errorf("%w: upcast: %v", ErrCorruptEvent, err))
	}
	for _, st := range chain.steps {
		if err := st.fn(p); err != nil {
			ReleasePayload(p)
			return resolved{}, eventError(rec, fmt.Errorf("%w: upcaster of %s from version %d: %w", ErrUpcast, chain.target.name, st.version, err))
		}
	}
	return resolved{d: chain.target, up: p}, nil
}

// StoredNames returns every name the event registered as name may be
// stored under: its own and those of renamed older versions.
func (r *Registry) StoredNames(name string) []string {
	return append([]string{name}, r.storedNames[name]...)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
