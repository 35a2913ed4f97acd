package budget

import (
	"context"
	"sort"
	"sync"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/projection"
)

// DirectoryEntry is a row of the user directory read model: it holds
// decrypted personal data, so it must be erased when its user is
// forgotten.
type DirectoryEntry struct {
	UserID    string
	Email     string
	Firstname string
	Lastname  string
	Version   int64
}

// DirectoryStore keeps the user directory. Put keeps a row only when its
// version is newer (the projection is at-least-once); Forget deletes the
// rows of a data subject.
type DirectoryStore interface {
	Get(ctx context.Context, userID string) (DirectoryEntry, bool, error)
	Put(ctx context.Context, e DirectoryEntry) error
	Forget(ctx context.Context, userID string) error
	Reset(ctx context.Context) error
}

// DirectoryProjection keeps a DirectoryStore up to date from the users'
// events, and erases a user's row on flux.SubjectForgotten
// (projection.Forgetting): a read model is a copy of personal data that
// deleting the key cannot reach.
func DirectoryProjection(name string, store DirectoryStore) *projection.Func {
	return projection.New(name, func(ctx context.Context, e flux.Envelope) error {
		if f, ok := e.Event.(flux.SubjectForgotten); ok {
			return store.Forget(ctx, f.Subject)
		}
		row, _, err := store.Get(ctx, e.StreamID)
		if err != nil {
			return err
		}
		if e.StreamVersion <= row.Version {
			return nil // seen already
		}
		if len(e.Forgotten) > 0 {
			return store.Forget(ctx, e.StreamID) // replayed after the user was forgotten
		}
		switch ev := e.Event.(type) {
		case UserSignedUp:
			row = DirectoryEntry{UserID: ev.UserID, Email: ev.Email, Firstname: ev.Firstname, Lastname: ev.Lastname}
		case UserFirstnameChanged:
			row.Firstname = ev.Firstname
		case UserLastnameChanged:
			row.Lastname = ev.Lastname
		case UserDeleted:
			return store.Forget(ctx, e.StreamID)
		}
		row.Version = e.StreamVersion
		return store.Put(ctx, row)
	}, projection.AggregateTypes("User"), projection.Forgetting(), projection.OnReset(store.Reset))
}

// MemoryDirectory is a DirectoryStore in memory, for tests and examples.
type MemoryDirectory struct {
	mu   sync.Mutex
	rows map[string]DirectoryEntry
	gone map[string]bool // forgotten users: late events do not bring them back
}

// NewMemoryDirectory returns an empty directory.
func NewMemoryDirectory() *MemoryDirectory {
	return &MemoryDirectory{rows: map[string]DirectoryEntry{}, gone: map[string]bool{}}
}

// Get implements DirectoryStore.
func (m *MemoryDirectory) Get(_ context.Context, id string) (DirectoryEntry, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.rows[id]
	return e, ok, nil
}

// Put implements DirectoryStore.
func (m *MemoryDirectory) Put(_ context.Context, e DirectoryEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone[e.UserID] {
		return nil
	}
	if old, ok := m.rows[e.UserID]; !ok || e.Version > old.Version {
		m.rows[e.UserID] = e
	}
	return nil
}

// Forget implements DirectoryStore.
func (m *MemoryDirectory) Forget(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.rows, id)
	m.gone[id] = true
	return nil
}

// Reset implements DirectoryStore.
func (m *MemoryDirectory) Reset(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rows, m.gone = map[string]DirectoryEntry{}, map[string]bool{}
	return nil
}

// List returns the rows by user ID.
func (m *MemoryDirectory) List() []DirectoryEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]DirectoryEntry, 0, len(m.rows))
	for _, e := range m.rows {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UserID < out[j].UserID })
	return out
}
