// Package memstore is an in-memory flux.EventStore for tests, examples and
// prototypes. It keeps every promise of the storage contract (it passes the
// storetest suite) but nothing survives the process.
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/backend"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/txhook"
	"github.com/fluxcapacitor/flux/wake"
)

// Store is an in-memory event store. It is safe for concurrent use. The
// zero value is not usable; call New.
type Store struct {
	// writeSem serialises appends from validation to commit, like the
	// log-head lock of the SQL backends; readers never wait for it. It is a
	// channel so that a waiting append honours its context.
	writeSem chan struct{}

	mu          sync.RWMutex
	log         []flux.Record              // index = position-1
	streams     map[string][]int           // stream ID -> log indexes in version order
	snapshots   map[string][]flux.Snapshot // by stream, ascending version
	idempotency map[string]flux.IdempotencyRecord
	keys        map[string]pii.StoredKey
	forgotten   map[string]pii.Forgetting
	checkpoints map[string]projection.Checkpoint
	closed      bool

	appended wake.Broadcaster

	maxEventSize int
}

var (
	_ flux.EventStore            = (*Store)(nil)
	_ flux.SnapshotStore         = (*Store)(nil)
	_ flux.IdempotencyStore      = (*Store)(nil)
	_ flux.Inspector             = (*Store)(nil)
	_ pii.KeyStore               = (*Store)(nil)
	_ projection.CheckpointStore = (*Store)(nil)
	_ projection.Waker           = (*Store)(nil)
)

// Wake implements projection.Waker.
func (s *Store) Wake(ctx context.Context) (<-chan struct{}, error) {
	return s.appended.Subscribe(ctx), nil
}

// Options configure a Store. The zero value is fine.
type Options struct {
	// MaxEventSize limits one payload in bytes. Default:
	// flux.DefaultMaxEventSize.
	MaxEventSize int
}

// New returns an empty store.
func New() *Store { return NewWithOptions(Options{}) }

// NewWithOptions returns an empty store configured by opts.
func NewWithOptions(opts Options) *Store {
	return &Store{
		writeSem:     make(chan struct{}, 1),
		streams:      make(map[string][]int),
		snapshots:    make(map[string][]flux.Snapshot),
		idempotency:  make(map[string]flux.IdempotencyRecord),
		keys:         make(map[string]pii.StoredKey),
		forgotten:    make(map[string]pii.Forgetting),
		checkpoints:  make(map[string]projection.Checkpoint),
		maxEventSize: opts.MaxEventSize,
	}
}

// Append implements flux.EventStore.
func (s *Store) Append(ctx context.Context, req flux.AppendRequest) (flux.AppendResult, error) {
	if err := flux.ValidateAppend(&req, s.maxEventSize); err != nil {
		return flux.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return flux.AppendResult{}, err
	}
	select {
	case s.writeSem <- struct{}{}:
		defer func() { <-s.writeSem }()
	case <-ctx.Done():
		return flux.AppendResult{}, ctx.Err()
	}

	s.mu.RLock()
	closed := s.closed
	next := int64(len(s.log)) + 1
	var prev time.Time // the log's last time, read under writeSem
	if len(s.log) > 0 {
		prev = s.log[len(s.log)-1].OccurredAt
	}
	var conflict error
	if k := req.Idempotency; k != nil {
		if first, dup := s.idempotency[k.Key]; dup {
			conflict = &flux.IdempotencyError{Record: first}
		}
	}
	versions := make([]int64, len(req.Streams))
	for i, st := range req.Streams {
		if conflict != nil {
			break
		}
		actual := int64(len(s.streams[st.StreamID]))
		if !st.Expected.Accepts(actual) {
			conflict = &flux.ConflictError{StreamID: st.StreamID, Expected: st.Expected, Actual: actual}
			break
		}
		versions[i] = actual
	}
	s.mu.RUnlock()
	if closed {
		return flux.AppendResult{}, flux.ErrStoreClosed
	}
	if conflict != nil {
		return flux.AppendResult{}, conflict
	}

	var recs []flux.Record
	res := flux.AppendResult{Versions: make([]int64, len(req.Streams)), OccurredAt: flux.StampTimes(&req, prev)}
	for i, st := range req.Streams {
		v := versions[i]
		for _, e := range st.Events {
			v++
			recs = append(recs, flux.Record{
				Position:      next,
				StreamID:      st.StreamID,
				StreamVersion: v,
				AggregateType: st.AggregateType,
				EventID:       e.EventID,
				EventName:     e.EventName,
				EventVersion:  e.EventVersion,
				Payload:       slices.Clone(e.Payload),
				Metadata:      cloneMetadata(e.Metadata),
				OccurredAt:    flux.NormalizeTime(e.OccurredAt),
			})
			res.Positions = append(res.Positions, next)
			next++
		}
		res.Versions[i] = v
	}
	if err := txhook.BeforeCommit(ctx); err != nil {
		return flux.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return flux.AppendResult{}, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return flux.AppendResult{}, flux.ErrStoreClosed
	}
	for _, r := range recs {
		s.streams[r.StreamID] = append(s.streams[r.StreamID], len(s.log))
		s.log = append(s.log, r)
	}
	for _, w := range req.Snapshots {
		s.putSnapshot(w)
	}
	if k := req.Idempotency; k != nil {
		s.idempotency[k.Key] = flux.IdempotencyRecord{Key: k.Key, Result: slices.Clone(k.Result), CreatedAt: flux.NormalizeTime(k.CreatedAt)}
	}
	s.appended.Signal()
	return res, nil
}

// putSnapshot stores w, replacing one at the same version, then prunes.
// The caller holds s.mu.
func (s *Store) putSnapshot(w flux.SnapshotWrite) {
	sn := w.Snapshot
	sn.Data = slices.Clone(sn.Data)
	sn.CreatedAt = flux.NormalizeTime(sn.CreatedAt)
	list := s.snapshots[sn.StreamID]
	i, found := slices.BinarySearchFunc(list, sn.Version, func(x flux.Snapshot, v int64) int { return cmp.Compare(x.Version, v) })
	if found {
		list[i] = sn
	} else {
		list = slices.Insert(list, i, sn)
	}
	if w.Keep > 0 && len(list) > w.Keep {
		list = slices.Clone(list[len(list)-w.Keep:])
	}
	s.snapshots[sn.StreamID] = list
}

// LoadSnapshot implements flux.SnapshotStore.
func (s *Store) LoadSnapshot(ctx context.Context, streamID string, q flux.SnapshotQuery) (flux.Snapshot, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return flux.Snapshot{}, false, flux.ErrStoreClosed
	}
	list := s.snapshots[streamID]
	for i := len(list) - 1; i >= 0; i-- {
		sn := list[i]
		if sn.SchemaVersion != q.SchemaVersion ||
			q.MaxVersion > 0 && sn.Version > q.MaxVersion ||
			!q.Until.IsZero() && sn.CreatedAt.After(q.Until) {
			continue
		}
		sn.Data = slices.Clone(sn.Data)
		return sn, true, nil
	}
	return flux.Snapshot{}, false, nil
}

// ListSnapshots implements flux.SnapshotStore.
func (s *Store) ListSnapshots(ctx context.Context, aggregateType string) iter.Seq2[flux.SnapshotInfo, error] {
	return func(yield func(flux.SnapshotInfo, error) bool) {
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			yield(flux.SnapshotInfo{}, flux.ErrStoreClosed)
			return
		}
		var out []flux.SnapshotInfo
		for _, id := range slices.Sorted(maps.Keys(s.snapshots)) {
			for _, sn := range s.snapshots[id] {
				if aggregateType == "" || sn.AggregateType == aggregateType {
					out = append(out, flux.SnapshotInfo{StreamID: sn.StreamID, AggregateType: sn.AggregateType,
						Version: sn.Version, SchemaVersion: sn.SchemaVersion, Size: len(sn.Data), CreatedAt: sn.CreatedAt})
				}
			}
		}
		s.mu.RUnlock()
		for _, info := range out {
			if !yield(info, nil) {
				return
			}
		}
	}
}

// PruneSnapshots implements flux.SnapshotStore.
func (s *Store) PruneSnapshots(ctx context.Context, keep int) (int64, error) {
	if keep < 1 {
		return 0, fmt.Errorf("%w: memstore: prune snapshots: keep %d, want >= 1", flux.ErrInvalidArgument, keep)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, flux.ErrStoreClosed
	}
	var n int64
	for id, list := range s.snapshots {
		if len(list) > keep {
			n += int64(len(list) - keep)
			s.snapshots[id] = slices.Clone(list[len(list)-keep:])
		}
	}
	return n, nil
}

// DeleteSnapshots implements flux.SnapshotStore.
func (s *Store) DeleteSnapshots(ctx context.Context, streamID string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, flux.ErrStoreClosed
	}
	var n int64
	for id, list := range s.snapshots {
		if streamID == "" || id == streamID {
			n += int64(len(list))
			delete(s.snapshots, id)
		}
	}
	return n, nil
}

// LookupIdempotency implements flux.IdempotencyStore.
func (s *Store) LookupIdempotency(ctx context.Context, key string) (flux.IdempotencyRecord, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return flux.IdempotencyRecord{}, false, flux.ErrStoreClosed
	}
	rec, ok := s.idempotency[key]
	rec.Result = slices.Clone(rec.Result)
	return rec, ok, nil
}

// ListStreams implements flux.Inspector.
func (s *Store) ListStreams(ctx context.Context, opts flux.ListStreamsOptions) iter.Seq2[flux.StreamInfo, error] {
	return func(yield func(flux.StreamInfo, error) bool) {
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			yield(flux.StreamInfo{}, flux.ErrStoreClosed)
			return
		}
		var out []flux.StreamInfo
		for _, id := range slices.Sorted(maps.Keys(s.streams)) {
			if opts.Limit > 0 && len(out) >= opts.Limit {
				break
			}
			idx := s.streams[id]
			first, last := s.log[idx[0]], s.log[idx[len(idx)-1]]
			if id <= opts.After || opts.AggregateType != "" && first.AggregateType != opts.AggregateType {
				continue
			}
			out = append(out, flux.StreamInfo{StreamID: id, AggregateType: first.AggregateType, Version: int64(len(idx)),
				FirstEventAt: first.OccurredAt, LastEventAt: last.OccurredAt})
		}
		s.mu.RUnlock()
		for _, si := range out {
			if !yield(si, nil) {
				return
			}
		}
	}
}

// Head implements flux.Inspector.
func (s *Store) Head(ctx context.Context) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, flux.ErrStoreClosed
	}
	return int64(len(s.log)), nil
}

// LoadKey implements pii.KeyStore.
func (s *Store) LoadKey(ctx context.Context, subject string) (pii.StoredKey, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return pii.StoredKey{}, flux.ErrStoreClosed
	}
	if _, gone := s.forgotten[subject]; gone {
		return pii.StoredKey{}, fmt.Errorf("%w: %q", pii.ErrForgotten, subject)
	}
	k, ok := s.keys[subject]
	if !ok {
		return pii.StoredKey{}, fmt.Errorf("%w: %q", pii.ErrKeyNotFound, subject)
	}
	return k, nil
}

// CreateKey implements pii.KeyStore.
func (s *Store) CreateKey(ctx context.Context, k pii.StoredKey) (pii.StoredKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return pii.StoredKey{}, flux.ErrStoreClosed
	}
	if _, gone := s.forgotten[k.Subject]; gone {
		return pii.StoredKey{}, fmt.Errorf("%w: %q", pii.ErrForgotten, k.Subject)
	}
	if existing, ok := s.keys[k.Subject]; ok {
		return existing, nil
	}
	k.CreatedAt, k.UpdatedAt = flux.NormalizeTime(k.CreatedAt), flux.NormalizeTime(k.UpdatedAt)
	s.keys[k.Subject] = k
	return k, nil
}

// ForgetSubject implements pii.KeyStore.
func (s *Store) ForgetSubject(ctx context.Context, f pii.Forgetting) error {
	if err := backend.CheckForgetting(f); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return flux.ErrStoreClosed
	}
	delete(s.keys, f.Subject)
	if _, done := s.forgotten[f.Subject]; !done {
		f.At = flux.NormalizeTime(f.At)
		s.forgotten[f.Subject] = f
	}
	return nil
}

// Forgotten implements pii.KeyStore.
func (s *Store) Forgotten(ctx context.Context, subject string) (pii.Forgetting, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return pii.Forgetting{}, false, flux.ErrStoreClosed
	}
	f, ok := s.forgotten[subject]
	return f, ok, nil
}

// RewrapKeys implements pii.KeyStore.
func (s *Store) RewrapKeys(ctx context.Context, rewrap func(pii.StoredKey) (pii.StoredKey, error)) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, flux.ErrStoreClosed
	}
	next := make(map[string]pii.StoredKey, len(s.keys))
	for _, subject := range slices.Sorted(maps.Keys(s.keys)) {
		k, err := rewrap(s.keys[subject])
		if err != nil {
			return 0, fmt.Errorf("memstore: rewrap key of %q: %w", subject, err)
		}
		k.Subject = subject
		k.UpdatedAt = flux.NormalizeTime(k.UpdatedAt)
		next[subject] = k
	}
	s.keys = next
	return len(next), nil
}

// LoadCheckpoint implements projection.CheckpointStore.
func (s *Store) LoadCheckpoint(ctx context.Context, name string) (projection.Checkpoint, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return projection.Checkpoint{}, flux.ErrStoreClosed
	}
	cp, ok := s.checkpoints[name]
	if !ok {
		return projection.Checkpoint{Name: name}, nil
	}
	return cp, nil
}

// SaveCheckpoint implements projection.CheckpointStore: the checkpoint
// moves only from where cp.Supersedes says it is.
func (s *Store) SaveCheckpoint(ctx context.Context, cp projection.Checkpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return flux.ErrStoreClosed
	}
	stored := s.checkpoints[cp.Name].Position
	if cp.Supersedes != projection.AnyPosition && stored != cp.Supersedes {
		return &projection.CheckpointBehindError{Name: cp.Name, Supersedes: cp.Supersedes, Position: cp.Position, Stored: stored}
	}
	cp.UpdatedAt, cp.Supersedes = flux.NormalizeTime(cp.UpdatedAt), 0
	s.checkpoints[cp.Name] = cp
	return nil
}

// ListCheckpoints implements projection.CheckpointStore.
func (s *Store) ListCheckpoints(ctx context.Context) ([]projection.Checkpoint, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, flux.ErrStoreClosed
	}
	out := make([]projection.Checkpoint, 0, len(s.checkpoints))
	for _, name := range slices.Sorted(maps.Keys(s.checkpoints)) {
		out = append(out, s.checkpoints[name])
	}
	return out, nil
}

// DeleteCheckpoint implements projection.CheckpointStore.
func (s *Store) DeleteCheckpoint(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return flux.ErrStoreClosed
	}
	delete(s.checkpoints, name)
	return nil
}

// ReadStream implements flux.EventStore.
func (s *Store) ReadStream(ctx context.Context, streamID string, opts flux.ReadStreamOptions) iter.Seq2[flux.Record, error] {
	return func(yield func(flux.Record, error) bool) {
		s.mu.RLock()
		closed := s.closed
		idx := s.streams[streamID] // append-only: this prefix never changes
		s.mu.RUnlock()
		if closed {
			yield(flux.Record{}, flux.ErrStoreClosed)
			return
		}
		from := max(opts.FromVersion, 1)
		for v := from; v <= int64(len(idx)); v++ {
			if opts.ToVersion > 0 && v > opts.ToVersion {
				return
			}
			if err := ctx.Err(); err != nil {
				yield(flux.Record{}, err)
				return
			}
			r := s.record(idx[v-1])
			if !inTime(r.OccurredAt, opts.Since, opts.Until) || !among(r.EventName, opts.EventNames) {
				continue
			}
			if !yield(r, nil) {
				return
			}
		}
	}
}

// ReadAll implements flux.EventStore.
func (s *Store) ReadAll(ctx context.Context, opts flux.ReadAllOptions) iter.Seq2[flux.Record, error] {
	return func(yield func(flux.Record, error) bool) {
		s.mu.RLock()
		closed := s.closed
		n := int64(len(s.log))
		s.mu.RUnlock()
		if closed {
			yield(flux.Record{}, flux.ErrStoreClosed)
			return
		}
		count := 0
		for pos := max(opts.After, 0) + 1; pos <= n; pos++ {
			if opts.Limit > 0 && count >= opts.Limit {
				return
			}
			if err := ctx.Err(); err != nil {
				yield(flux.Record{}, err)
				return
			}
			r := s.record(int(pos - 1))
			if !inTime(r.OccurredAt, opts.Since, opts.Until) ||
				!among(r.EventName, opts.EventNames) ||
				!among(r.AggregateType, opts.AggregateTypes) ||
				opts.CorrelationID != "" && r.Metadata.CorrelationID != opts.CorrelationID ||
				opts.RequestID != "" && r.Metadata.RequestID != opts.RequestID {
				continue
			}
			count++
			if !yield(r, nil) {
				return
			}
		}
	}
}

// record returns a copy of the record at log index i, so callers can never
// modify what the store holds.
func (s *Store) record(i int) flux.Record {
	s.mu.RLock()
	r := s.log[i]
	s.mu.RUnlock()
	r.Payload = slices.Clone(r.Payload)
	r.Metadata = cloneMetadata(r.Metadata)
	return r
}

// Close implements flux.EventStore. It is idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func cloneMetadata(m flux.Metadata) flux.Metadata {
	if m.Extra != nil {
		extra := make(map[string]string, len(m.Extra))
		for k, v := range m.Extra {
			extra[k] = v
		}
		m.Extra = extra
	}
	return m
}

func inTime(t, since, until time.Time) bool {
	return (since.IsZero() || !t.Before(since)) && (until.IsZero() || !t.After(until))
}

func among(s string, set []string) bool {
	return len(set) == 0 || slices.Contains(set, s)
}
