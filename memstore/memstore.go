// Package memstore is an in-memory flux.EventStore for tests, examples and
// prototypes. It keeps every promise of the storage contract (it passes the
// storetest suite) but nothing survives the process.
package memstore

import (
	"context"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/internal/txhook"
)

// Store is an in-memory event store. It is safe for concurrent use. The
// zero value is not usable; call New.
type Store struct {
	// writeSem serialises appends from validation to commit, like the
	// log-head lock of the SQL backends; readers never wait for it. It is a
	// channel so that a waiting append honours its context.
	writeSem chan struct{}

	mu      sync.RWMutex
	log     []flux.Record    // index = position-1
	streams map[string][]int // stream ID -> log indexes in version order
	closed  bool

	maxEventSize int
}

var _ flux.EventStore = (*Store)(nil)

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
	var conflict error
	versions := make([]int64, len(req.Streams))
	for i, st := range req.Streams {
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
	res := flux.AppendResult{Versions: make([]int64, len(req.Streams))}
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
	return res, nil
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
