package flux

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fluxcapacitor/flux/uuid"
)

// EventStore is the storage contract every backend implements: memstore,
// sqlitestore, pgstore, mysqlstore. The storetest package holds the
// conformance suite that pins every promise below; a backend is done when
// it passes storetest.Run.
//
// Promises:
//
//   - Append is atomic across every stream of one call. Each stream's
//     expected version is enforced by the database (a unique (stream,
//     version) constraint), never by a read-then-write in Go. A lost race is
//     a *ConflictError; nothing of a failed call is written.
//   - Positions in the global log are assigned in commit order: a reader of
//     ReadAll that has seen position p will never later see a committed
//     record with a position <= p. Readers may therefore resume from the
//     last position they saw. Positions are dense — 1, 2, 3, ... — and a
//     rolled-back append leaves no hole, so Head minus a reader's position
//     is exactly the number of events it has yet to see.
//   - Input is validated with ValidateAppend before any I/O.
//   - Reads are streamed: the iterators hold one database cursor and never
//     load a whole stream or log into memory. Stop early by breaking out
//     of the range loop; the cursor is released.
//   - Methods are safe for concurrent use. After Close every method returns
//     ErrStoreClosed; Close is idempotent.
type EventStore interface {
	// Append writes the events of every stream in req in one transaction
	// and returns their global positions in request order.
	Append(ctx context.Context, req AppendRequest) (AppendResult, error)

	// ReadStream yields the records of one stream in version order,
	// filtered by opts. A stream with no (matching) events yields nothing;
	// that is not an error at this level.
	ReadStream(ctx context.Context, streamID string, opts ReadStreamOptions) iter.Seq2[Record, error]

	// ReadAll yields the global log in position (= commit) order, filtered
	// by opts.
	ReadAll(ctx context.Context, opts ReadAllOptions) iter.Seq2[Record, error]

	// Close releases the store's resources. Calling it twice is harmless.
	Close() error
}

// ExpectedVersion is what a writer believes a stream's version to be. Use a
// positive version for "exactly this", NoStream, StreamExists or Any.
//
// Outcome of an append by expectation and stream state (pinned for every
// backend by storetest):
//
//	expected       absent stream            stream at version v
//	Any            appended from version 1  appended from v+1
//	NoStream       appended from version 1  *ConflictError (actual v)
//	StreamExists   *ConflictError (actual 0) appended from v+1
//	n (n >= 1)     *ConflictError (actual 0) appended from v+1 when n == v,
//	                                         else *ConflictError (actual v)
type ExpectedVersion int64

const (
	// Any skips the version check: append after whatever is there.
	Any ExpectedVersion = -1
	// NoStream requires that the stream has no events yet.
	NoStream ExpectedVersion = 0
	// StreamExists requires that the stream has at least one event, at
	// whatever version: append after it.
	StreamExists ExpectedVersion = -2
)

func (v ExpectedVersion) String() string {
	switch {
	case v == Any:
		return "any"
	case v == NoStream:
		return "0 (no stream)"
	case v == StreamExists:
		return ">= 1 (stream exists)"
	default:
		return strconv.FormatInt(int64(v), 10)
	}
}

// AppendRequest is one atomic write: events, snapshots and an idempotency
// record commit together or not at all.
type AppendRequest struct {
	// Streams to append to, each with its own expected version. A stream
	// may appear only once.
	Streams []StreamAppend
	// Snapshots to write in the same transaction. A snapshot replaces one
	// of the same stream and version; after writing, only the newest Keep
	// snapshots of its stream are kept (Keep 0 keeps all).
	Snapshots []SnapshotWrite
	// Idempotency, when set, records a command's idempotency key and
	// outcome in the same transaction. If the key is already recorded the
	// append writes nothing and fails with an *IdempotencyError (matching
	// ErrDuplicateCommand) that carries the first outcome. An append may
	// carry only an idempotency record, for commands that raise no events.
	Idempotency *IdempotencyRecord
}

// Snapshot is an aggregate's state at one stream version.
type Snapshot struct {
	StreamID      string
	AggregateType string
	// Version is the stream version the state includes (>= 1).
	Version int64
	// SchemaVersion is the aggregate's snapshot schema version; loads
	// ignore snapshots of another schema.
	SchemaVersion int
	// Data is the encoded state (JSON), personal data encrypted.
	Data []byte
	// CreatedAt is the occurred-at time of the snapshot's last event, so a
	// load at time t may use the snapshot when CreatedAt <= t.
	CreatedAt time.Time
}

// SnapshotWrite is a snapshot to write and how many of its stream's
// snapshots to keep.
type SnapshotWrite struct {
	Snapshot
	// Keep is how many of the stream's newest snapshots survive this write
	// (0: all).
	Keep int
}

// SnapshotQuery selects the snapshot a load may start from: the newest of
// the given schema with Version <= MaxVersion and CreatedAt <= Until.
type SnapshotQuery struct {
	SchemaVersion int
	// MaxVersion bounds the version; 0 means no bound.
	MaxVersion int64
	// Until bounds CreatedAt, inclusive; zero means no bound.
	Until time.Time
}

// SnapshotInfo describes a stored snapshot without its data.
type SnapshotInfo struct {
	StreamID      string
	AggregateType string
	Version       int64
	SchemaVersion int
	Size          int
	CreatedAt     time.Time
}

// SnapshotStore is the snapshot part of the storage contract; every
// backend implements it (snapshots are written through Append).
type SnapshotStore interface {
	// LoadSnapshot returns the snapshot of streamID selected by q, and
	// false when there is none.
	LoadSnapshot(ctx context.Context, streamID string, q SnapshotQuery) (Snapshot, bool, error)
	// ListSnapshots yields every stored snapshot, without data, by stream
	// ID then version; aggregateType filters when not empty.
	ListSnapshots(ctx context.Context, aggregateType string) iter.Seq2[SnapshotInfo, error]
	// PruneSnapshots keeps the newest keep (>= 1) snapshots of every
	// stream and deletes the rest, returning how many were deleted.
	PruneSnapshots(ctx context.Context, keep int) (int64, error)
	// DeleteSnapshots deletes every snapshot of streamID, or of every
	// stream when streamID is empty, returning how many were deleted.
	DeleteSnapshots(ctx context.Context, streamID string) (int64, error)
}

// IdempotencyRecord is a command's idempotency key and the outcome of its
// first execution, as stored.
type IdempotencyRecord struct {
	// Key identifies the command execution (at most MaxNameLength bytes).
	Key string
	// Result is the encoded outcome returned to later duplicates.
	Result []byte
	// CreatedAt is when the first execution committed.
	CreatedAt time.Time
}

// IdempotencyStore is the idempotency part of the storage contract;
// records are written through Append.
type IdempotencyStore interface {
	// LookupIdempotency returns the record for key, and false when the key
	// was never recorded.
	LookupIdempotency(ctx context.Context, key string) (IdempotencyRecord, bool, error)
}

// StreamInfo summarises one stream.
type StreamInfo struct {
	StreamID      string
	AggregateType string
	Version       int64
	FirstEventAt  time.Time
	LastEventAt   time.Time
}

// ListStreamsOptions filter Inspector.ListStreams.
type ListStreamsOptions struct {
	// AggregateType keeps only streams of this type when not empty.
	AggregateType string
	// After returns streams whose ID sorts after this one (paging).
	After string
	// Limit caps the number of streams; 0 means no limit.
	Limit int
}

// Inspector lets tools look at a store as a whole; every backend
// implements it.
type Inspector interface {
	// ListStreams yields streams ordered by stream ID.
	ListStreams(ctx context.Context, opts ListStreamsOptions) iter.Seq2[StreamInfo, error]
	// Head returns the highest position in the global log (0 when empty).
	Head(ctx context.Context) (int64, error)
}

// StreamAppend is the part of an append that goes to one stream.
type StreamAppend struct {
	StreamID      string
	AggregateType string
	Expected      ExpectedVersion
	Events        []EventData
}

// AppendResult reports where the events of an append were written.
type AppendResult struct {
	// Positions holds the global position of every event, in request order
	// (streams in order, events in order within each stream).
	Positions []int64
	// Versions holds each stream's new version, in request order.
	Versions []int64
	// OccurredAt holds the time every event was stored with, in request
	// order like Positions (see StampTimes): the time it was given, or
	// later when the log already held a later one.
	OccurredAt []time.Time
}

// ReadStreamOptions filter ReadStream. The zero value reads everything.
type ReadStreamOptions struct {
	// FromVersion is the first stream version to return; 0 means 1.
	FromVersion int64
	// ToVersion is the last stream version to return; 0 means no limit.
	ToVersion int64
	// Since and Until bound OccurredAt, both inclusive; zero means unbounded.
	Since, Until time.Time
	// EventNames, when not empty, keeps only records with one of these
	// stored event names.
	EventNames []string
}

// ReadAllOptions filter ReadAll. The zero value reads the whole log.
type ReadAllOptions struct {
	// After is the last position already seen; records with a greater
	// position are returned. 0 reads from the start.
	After int64
	// Limit caps the number of records; 0 means no limit.
	Limit int
	// EventNames and AggregateTypes, when not empty, keep only records with
	// one of these stored event names / aggregate types.
	EventNames     []string
	AggregateTypes []string
	// Since and Until bound OccurredAt, both inclusive; zero means unbounded.
	Since, Until time.Time
	// CorrelationID and RequestID, when set, keep only records with that ID.
	CorrelationID string
	RequestID     string
}

// Limits a store enforces before any I/O.
const (
	// MaxStreamIDLength is the longest stream ID in bytes (VARCHAR(255)).
	MaxStreamIDLength = 255
	// MaxNameLength is the longest event name or aggregate type in bytes.
	MaxNameLength = 255
	// DefaultMaxEventSize is the default limit on one encoded payload:
	// 4 MiB. Backends let their configuration change it.
	DefaultMaxEventSize = 4 << 20
	// MaxJSONDepth is the deepest nesting of arrays and objects a payload
	// or snapshot may have: MariaDB's JSON columns refuse deeper
	// documents, so every backend does, before any I/O.
	MaxJSONDepth = 31
)

// DefaultRequestID is stored as the request ID of events saved without one,
// like the PHP library's DomainEventInterface::DEFAULT_REQUEST_ID.
const DefaultRequestID = "00000000-0000-0000-0000-000000000000"

// ValidateStreamID returns an error matching ErrInvalidStreamID when id is
// not a usable stream ID.
func ValidateStreamID(id string) error {
	switch {
	case id == "":
		return errorf(ErrInvalidStreamID, "stream ID is empty; set the aggregate's ID (Root.SetID) before saving")
	case len(id) > MaxStreamIDLength:
		return errorf(ErrInvalidStreamID, "stream ID %q... is %d bytes, longer than %d", id[:32], len(id), MaxStreamIDLength)
	case !utf8.ValidString(id):
		return errorf(ErrInvalidStreamID, "stream ID %q is not valid UTF-8", id)
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return errorf(ErrInvalidStreamID, "stream ID %q contains control character %U", id, r)
		}
	}
	return nil
}

// ValidateAppend checks an append request before a backend touches its
// database. maxEventSize <= 0 means DefaultMaxEventSize. Every backend calls
// it first thing in Append, so invalid input fails the same way everywhere.
func ValidateAppend(req *AppendRequest, maxEventSize int) error {
	if maxEventSize <= 0 {
		maxEventSize = DefaultMaxEventSize
	}
	if len(req.Streams) == 0 && req.Idempotency == nil && len(req.Snapshots) == 0 {
		return errorf(ErrInvalidAppend, "nothing to append")
	}
	if k := req.Idempotency; k != nil {
		if err := validateName("idempotency key", k.Key); err != nil {
			return err
		}
		if k.CreatedAt.IsZero() {
			return errorf(ErrInvalidAppend, "idempotency key %q: created-at time is zero", k.Key)
		}
	}
	for i := range req.Snapshots {
		sn := &req.Snapshots[i]
		if err := ValidateStreamID(sn.StreamID); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		if err := validateName("aggregate type", sn.AggregateType); err != nil {
			return fmt.Errorf("snapshot of stream %q: %w", sn.StreamID, err)
		}
		switch {
		case sn.Version < 1:
			return errorf(ErrInvalidAppend, "snapshot of stream %q: version %d, want >= 1", sn.StreamID, sn.Version)
		case sn.SchemaVersion < 1:
			return errorf(ErrInvalidAppend, "snapshot of stream %q: schema version %d, want >= 1", sn.StreamID, sn.SchemaVersion)
		case sn.Keep < 0:
			return errorf(ErrInvalidAppend, "snapshot of stream %q: keep %d, want >= 0", sn.StreamID, sn.Keep)
		case sn.CreatedAt.IsZero():
			return errorf(ErrInvalidAppend, "snapshot of stream %q: created-at time is zero", sn.StreamID)
		case !json.Valid(sn.Data) || !utf8.Valid(sn.Data):
			return errorf(ErrInvalidAppend, "snapshot of stream %q version %d: data is not valid JSON in UTF-8", sn.StreamID, sn.Version)
		}
		if problem := jsonLimits(sn.Data); problem != "" {
			return errorf(ErrInvalidAppend, "snapshot of stream %q version %d: data %s", sn.StreamID, sn.Version, problem)
		}
	}
	seen := make(map[string]struct{}, len(req.Streams))
	for i := range req.Streams {
		s := &req.Streams[i]
		if err := ValidateStreamID(s.StreamID); err != nil {
			return err
		}
		if _, dup := seen[s.StreamID]; dup {
			return errorf(ErrInvalidAppend, "stream %q appears twice in one append; merge its events", s.StreamID)
		}
		seen[s.StreamID] = struct{}{}
		if err := validateName("aggregate type", s.AggregateType); err != nil {
			return fmt.Errorf("stream %q: %w", s.StreamID, err)
		}
		if s.Expected < StreamExists {
			return errorf(ErrInvalidAppend, "stream %q: expected version %d is negative; use flux.Any, flux.NoStream or flux.StreamExists", s.StreamID, int64(s.Expected))
		}
		if len(s.Events) == 0 {
			return errorf(ErrInvalidAppend, "stream %q has no events to append", s.StreamID)
		}
		for j := range s.Events {
			e := &s.Events[j]
			if err := validateName("event name", e.EventName); err != nil {
				return fmt.Errorf("stream %q event %d: %w", s.StreamID, j, err)
			}
			if e.EventVersion < 1 {
				return errorf(ErrInvalidAppend, "stream %q event %s: schema version %d, want >= 1", s.StreamID, e.EventName, e.EventVersion)
			}
			if !uuid.Valid(e.EventID) {
				return errorf(ErrInvalidAppend, "stream %q event %s: event ID %q is not a UUID", s.StreamID, e.EventName, e.EventID)
			}
			if len(e.Payload) > maxEventSize {
				return &EventTooLargeError{StreamID: s.StreamID, EventName: e.EventName, Size: len(e.Payload), Limit: maxEventSize}
			}
			if !json.Valid(e.Payload) || !utf8.Valid(e.Payload) {
				return errorf(ErrInvalidAppend, "stream %q event %s: payload is not valid JSON in UTF-8", s.StreamID, e.EventName)
			}
			if problem := jsonLimits(e.Payload); problem != "" {
				return errorf(ErrInvalidAppend, "stream %q event %s (ID %s): payload %s", s.StreamID, e.EventName, e.EventID, problem)
			}
			if err := validateMetadata(&e.Metadata); err != nil {
				return fmt.Errorf("stream %q event %s: %w", s.StreamID, e.EventName, err)
			}
			if e.OccurredAt.IsZero() {
				return errorf(ErrInvalidAppend, "stream %q event %s: occurred-at time is zero", s.StreamID, e.EventName)
			}
		}
	}
	return nil
}

// validateMetadata bounds the metadata IDs (VARCHAR(255) columns) and
// requires UTF-8 text.
func validateMetadata(m *Metadata) error {
	for _, id := range []struct{ what, v string }{{"request ID", m.RequestID}, {"correlation ID", m.CorrelationID}, {"causation ID", m.CausationID}} {
		if len(id.v) > MaxNameLength || !textOK(id.v) {
			return errorf(ErrInvalidAppend, "metadata %s is longer than %d bytes, not UTF-8 or contains NUL", id.what, MaxNameLength)
		}
	}
	for k, v := range m.Extra {
		if !textOK(k) || !textOK(v) {
			return errorf(ErrInvalidAppend, "metadata key %q: keys and values must be UTF-8 without NUL", k)
		}
	}
	return nil
}

func validateName(what, name string) error {
	switch {
	case name == "":
		return errorf(ErrInvalidAppend, "%s is empty", what)
	case len(name) > MaxNameLength:
		return errorf(ErrInvalidAppend, "%s is %d bytes, longer than %d", what, len(name), MaxNameLength)
	case !utf8.ValidString(name):
		return errorf(ErrInvalidAppend, "%s %q is not valid UTF-8", what, name)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return errorf(ErrInvalidAppend, "%s %q contains control character %U", what, name, r)
		}
	}
	return nil
}

// textOK reports whether s can be stored in a text column everywhere:
// UTF-8 without NUL (PostgreSQL refuses NUL in text).
func textOK(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// Accepts reports whether a stream currently at version actual accepts an
// append that expects v.
func (v ExpectedVersion) Accepts(actual int64) bool {
	return v == Any || v == StreamExists && actual > 0 || int64(v) == actual
}

// NormalizeTime returns t in UTC truncated to microseconds, the precision
// every backend stores.
func NormalizeTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// StampTimes sets the time every event of req is stored with, and returns
// those times in request order. Backends call it inside the serialised
// part of an append — after taking the log-head lock, before writing —
// with prev, the time of the last event in the log (zero when the log is
// empty), so that time order is log order: times never decrease along the
// global log, and so never within a stream.
//
// Each event is stored at the later of the time it was given (the
// writer's clock) and the time stored before it. An event given an
// earlier time than the log's last — a writer whose clock is behind, or
// one that read the clock before it waited for the lock — is stored at the
// log's last time. A snapshot written with events of its stream gets the
// stored time of the stream's last event of req, the event at the
// snapshot's version.
//
// StampTimes copies the slices it changes, so the caller's request is
// left alone; it does not validate req (call ValidateAppend first).
func StampTimes(req *AppendRequest, prev time.Time) []time.Time {
	n := 0
	for i := range req.Streams {
		n += len(req.Streams[i].Events)
	}
	times := make([]time.Time, 0, n)
	last := NormalizeTime(prev)
	streams := make([]StreamAppend, len(req.Streams))
	for i, st := range req.Streams {
		evs := make([]EventData, len(st.Events))
		for j, e := range st.Events {
			if at := NormalizeTime(e.OccurredAt); at.After(last) {
				last = at
			}
			e.OccurredAt = last
			evs[j] = e
			times = append(times, last)
		}
		st.Events = evs
		streams[i] = st
	}
	req.Streams = streams
	if len(req.Snapshots) > 0 {
		snaps := make([]SnapshotWrite, len(req.Snapshots))
		for i, w := range req.Snapshots {
			for _, st := range req.Streams {
				if st.StreamID == w.StreamID && len(st.Events) > 0 {
					w.CreatedAt = st.Events[len(st.Events)-1].OccurredAt
				}
			}
			snaps[i] = w
		}
		req.Snapshots = snaps
	}
	return times
}
