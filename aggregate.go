package flux

// Aggregate is implemented by every event-sourced aggregate: a pointer to a
// struct that embeds Root and has an Apply method.
//
// Apply is the one place where state changes. It runs when the aggregate
// raises an event (Raise) and again, for every stored event, when the
// aggregate is rebuilt by Load. It must only assign state — no validation,
// no I/O, no errors: the event already happened. Write it as a type switch
// over the aggregate's event types; the compiler checks each case's type:
//
//	func (u *User) Apply(event any) {
//		switch e := event.(type) {
//		case UserRegistered:
//			u.Email, u.Name = e.Email, e.Name
//		case UserRenamed:
//			u.Name = e.Name
//		}
//	}
//
// Events arrive as values of their registered types (never pointers).
//
// The other methods come from the embedded Root.
type Aggregate interface {
	Apply(event any)
	ID() string
	Version() int64
	PendingEvents() []any
	root() *Root
}

// Root holds what the framework tracks for an aggregate: its ID, its version
// and the events raised since it was loaded or saved. Embed it (by value) in
// the aggregate struct. The zero value is an aggregate with no ID and no
// history.
//
// A Root is not safe for concurrent use; neither is the aggregate around it.
type Root struct {
	id      string
	version int64
	pending []any
	loaded  LoadInfo
	// snapshotVersion is the version of the newest snapshot known to exist
	// (loaded from or written by a save): the next one is due Every events
	// after it.
	snapshotVersion int64
}

func (r *Root) root() *Root { return r }

// ID returns the aggregate's ID, which is also its stream ID.
func (r *Root) ID() string { return r.id }

// SetID sets the ID of a new aggregate. Call it once, before raising the
// first event; loads set the ID themselves.
func (r *Root) SetID(id string) { r.id = id }

// Version returns the aggregate's version: the number of events in its
// history, including raised events that are not saved yet.
func (r *Root) Version() int64 { return r.version }

// PendingEvents returns the events raised since the aggregate was loaded or
// last saved, oldest first. The slice must not be modified.
func (r *Root) PendingEvents() []any { return r.pending }

// LoadInfo tells how the aggregate was last rebuilt.
func (r *Root) LoadInfo() LoadInfo { return r.loaded }

// committedVersion is the version the store holds: the expected version of
// the next save.
func (r *Root) committedVersion() int64 { return r.version - int64(len(r.pending)) }

// markSaved forgets the pending events after a successful save.
func (r *Root) markSaved() { r.pending = nil }

// LoadInfo describes one rebuild of an aggregate from the store, so that the
// cost of loads can be watched (see also the Observer hooks).
type LoadInfo struct {
	// EventsReplayed is the number of events applied by the load.
	EventsReplayed int
	// SnapshotVersion is the version of the snapshot the load started
	// from, 0 when none was used.
	SnapshotVersion int64
	// SnapshotRejected is set when a snapshot was found but could not be
	// restored (RestoreSnapshot failed); the load then replayed every
	// event, and the next save writes a fresh snapshot.
	SnapshotRejected bool
	// Forgotten is set when personal data in the aggregate's history
	// belonged to a forgotten subject: those fields hold replacement
	// values.
	Forgotten bool
}

// Raise applies event to the aggregate at once and records it as pending,
// to be stored by the next save. event must be a value of a type registered
// for the aggregate with EventType; Save rejects unregistered types with
// ErrUnknownEvent.
//
//	func (u *User) Rename(name string) error {
//		if name == "" {
//			return errors.New("name is empty")
//		}
//		flux.Raise(u, UserRenamed{Name: name})
//		return nil
//	}
func Raise(a Aggregate, event any) {
	a.Apply(event)
	r := a.root()
	r.pending = append(r.pending, event)
	r.version++
}
