package flux

import "reflect"

// Snapshotter is implemented by aggregates that can be snapshotted (the PHP
// library's createSnapshot / fromSnapshot). Aggregates that implement it are
// snapshotted automatically on save (every 50 events by default; see
// Snapshots) and loads start from the newest usable snapshot.
//
// The simplest implementation stores the aggregate's exported fields:
//
//	func (u *User) SnapshotState() any { return u }
//	func (u *User) RestoreSnapshot(decode func(any) error) error { return decode(u) }
//
// Use a dedicated state struct when the exported fields are not the state,
// and bump SnapshotPolicy.Schema whenever that state changes shape: older
// snapshots are then ignored (and replaced on a later save), never decoded
// into the wrong shape.
//
// Personal data: when the aggregate's events carry fields marked
// `pii:"data"`, the state must mark the fields that hold that data too (and
// name its subject with a `pii:"subject"` field or a PersonalDataSubject
// method); they are then encrypted under the subject's key like the events,
// and read as replacement values once the subject is forgotten.
// NewRepository refuses a state that would store such data in clear, naming
// the state field and the event field; see SnapshotPolicy.NoPersonalData
// for the explicit opt-out.
type Snapshotter interface {
	// SnapshotState returns the state to store, encoded as JSON.
	SnapshotState() any
	// RestoreSnapshot restores the aggregate's state by calling decode
	// with a pointer to decode into.
	RestoreSnapshot(decode func(v any) error) error
}

// SnapshotPolicy configures an aggregate type's snapshots.
type SnapshotPolicy struct {
	// Every is the number of events after which a save takes a new
	// snapshot: when the aggregate's version reaches at least Every events
	// past its last snapshot. Default 50 (the PHP library's advice: 50 for
	// write-heavy, 10 for read-heavy aggregates).
	Every int
	// Keep is how many snapshots per aggregate survive; older ones are
	// deleted in the same transaction as a new one is written. Default 2.
	Keep int
	// Schema is the version of the snapshot state's shape. Default 1.
	Schema int
	// Disabled turns snapshots off for an aggregate type that implements
	// Snapshotter.
	Disabled bool
	// NoPersonalData declares that the snapshot state holds none of the
	// personal data of the aggregate's events, so it may be stored as it
	// is. Without it, NewRepository refuses an aggregate whose events have
	// `pii:"data"` fields unless its snapshot state marks its own personal
	// fields (which are then encrypted under the subject's key, like the
	// events'). The cost of declaring it wrongly: whatever personal data the
	// state does hold is written in clear to the snapshots table and is not
	// reached by Forget (only deleting the snapshots removes it). Use it for
	// states that keep only derived, non-personal facts (a count, a flag).
	NoPersonalData bool
}

// Default snapshot settings.
const (
	DefaultSnapshotEvery = 50
	DefaultSnapshotKeep  = 2
)

func (p SnapshotPolicy) withDefaults() SnapshotPolicy {
	if p.Every == 0 {
		p.Every = DefaultSnapshotEvery
	}
	if p.Keep == 0 {
		p.Keep = DefaultSnapshotKeep
	}
	if p.Schema == 0 {
		p.Schema = 1
	}
	return p
}

type snapshotOption SnapshotPolicy

func (o snapshotOption) applyAggregate(b *registryBuilder, a *aggregateDef) {
	p := SnapshotPolicy(o)
	if p.Every < 0 || p.Keep < 0 || p.Schema < 0 {
		b.fail("aggregate %q: snapshot policy %+v has a negative setting", a.name, p)
		return
	}
	if !a.typ.Implements(reflect.TypeFor[Snapshotter]()) {
		b.fail("aggregate %q: has a snapshot policy but Go type %v does not implement flux.Snapshotter", a.name, a.typ)
		return
	}
	if p.Disabled {
		a.snapshot = nil
		a.snapshotSet = true
		return
	}
	p = p.withDefaults()
	a.snapshot = &p
	a.snapshotSet = true
}

// Snapshots configures the snapshots of the aggregate type it is passed to.
// Without it, aggregates implementing Snapshotter use the defaults.
func Snapshots(p SnapshotPolicy) AggregateOption { return snapshotOption(p) }

// SnapshotPolicyOf returns the snapshot policy of an aggregate type, and
// false when it takes no snapshots.
func (r *Registry) SnapshotPolicyOf(aggregateType string) (SnapshotPolicy, bool) {
	if d, ok := r.aggregates[aggregateType]; ok && d.snapshot != nil {
		return *d.snapshot, true
	}
	return SnapshotPolicy{}, false
}
