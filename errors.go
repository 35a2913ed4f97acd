package flux

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Every error FluxCapacitor returns that a caller may want to
// act on matches one of these with [errors.Is]; the typed errors below carry
// the details (stream, versions, event) and match their sentinel.
var (
	// ErrConcurrencyConflict is returned by EventStore.Append and
	// Repository.Save when a stream's expected version did not hold: another
	// writer appended first. The error is a *ConflictError naming the stream,
	// the expected and the actual version. Reload the aggregate and retry the
	// command (see the retry middleware); nothing of the failed call was written.
	ErrConcurrencyConflict = errors.New("flux: concurrency conflict")

	// ErrAggregateNotFound is returned by Load, LoadAt and LoadVersion when
	// the stream has no events (at the requested time or version).
	ErrAggregateNotFound = errors.New("flux: aggregate not found")

	// ErrUnknownEvent is returned when an event's Go type is not registered
	// (on save) or a stored event name/version has no registered type and no
	// upcaster (on load). Register the event with EventType in NewRegistry.
	ErrUnknownEvent = errors.New("flux: unknown event")

	// ErrUnknownAggregate is returned when an aggregate's Go type or stored
	// aggregate type name is not registered. Register it with AggregateType.
	ErrUnknownAggregate = errors.New("flux: unknown aggregate type")

	// ErrAggregateTypeMismatch is returned by a load when the stream belongs
	// to another aggregate type than the one asked for.
	ErrAggregateTypeMismatch = errors.New("flux: aggregate type mismatch")

	// ErrInvalidStreamID is returned, before any I/O, for an empty stream ID,
	// one longer than MaxStreamIDLength bytes, or one that is not valid UTF-8
	// or contains control characters.
	ErrInvalidStreamID = errors.New("flux: invalid stream ID")

	// ErrEventTooLarge is returned, before any I/O, when an encoded event
	// payload exceeds the store's limit. The error is an *EventTooLargeError.
	ErrEventTooLarge = errors.New("flux: event too large")

	// ErrInvalidAppend is returned, before any I/O, for a malformed append:
	// a stream listed twice, an empty event name, a bad event ID, a payload
	// that is not JSON, an impossible expected version.
	ErrInvalidAppend = errors.New("flux: invalid append")

	// ErrInvalidArgument is returned, before any I/O, for an argument no
	// call can succeed with: LoadAt with a zero time, LoadVersion with a
	// version below 1 (the error names the stream and the argument),
	// SnapshotStore.PruneSnapshots keeping fewer than 1.
	ErrInvalidArgument = errors.New("flux: invalid argument")

	// ErrCorruptEvent is returned when a stored event cannot be decoded into
	// its registered Go type. The error is an *EventError naming the stream,
	// version and event.
	ErrCorruptEvent = errors.New("flux: corrupt event")

	// ErrUpcast is returned, inside an *EventError naming the stream,
	// version and event, when an upcaster fails on a stored event.
	ErrUpcast = errors.New("flux: upcast failed")

	// ErrPersonalData is matched by every error of personal-data
	// protection (package pii): tampered ciphertext, a wrong secret, a
	// subject without an ID, a marked field of an unsupported kind, saving
	// personal data of a forgotten subject. Such errors name the stream,
	// version and field, never the value.
	ErrPersonalData = errors.New("flux: personal data")

	// ErrStoreClosed is returned by every store method called after Close.
	ErrStoreClosed = errors.New("flux: store closed")

	// ErrStoreUnavailable is returned when the database cannot be reached or
	// the connection was lost mid-operation. A connection lost before the
	// commit means nothing was written (the database rolls back); lost
	// during the commit, the outcome may be unknown, and the error says so
	// and names an event ID to look for. Retry later.
	ErrStoreUnavailable = errors.New("flux: store unavailable")

	// ErrTransient is returned when the database aborted an operation that
	// may succeed if run again unchanged: a serialization failure
	// (SQLSTATE 40001), a deadlock (PostgreSQL 40P01, MySQL/MariaDB 1213)
	// or a lock wait timeout (MySQL/MariaDB 1205, PostgreSQL 55P03).
	// Nothing of a failed write was committed. RetryOnConflict retries
	// commands that fail with it.
	ErrTransient = errors.New("flux: transient failure")

	// ErrDuplicateCommand is returned by EventStore.Append when its
	// idempotency key is already recorded, as an *IdempotencyError carrying
	// the first outcome. Nothing of the append was written.
	ErrDuplicateCommand = errors.New("flux: duplicate command")

	// ErrInvalidRegistry is returned by NewRegistry for conflicting or
	// incomplete definitions: a name registered twice, a Go type registered
	// twice, an event without an aggregate, an upcaster chain with a hole.
	ErrInvalidRegistry = errors.New("flux: invalid registry")
)

// ConflictError reports a lost optimistic-concurrency race on one stream.
// It matches ErrConcurrencyConflict.
type ConflictError struct {
	StreamID string
	// Expected is the version the writer expected the stream to be at.
	Expected ExpectedVersion
	// Actual is the stream's version when the conflict was detected, or -1
	// when the backend could not read it.
	Actual int64
}

func (e *ConflictError) Error() string {
	actual := "unknown"
	if e.Actual >= 0 {
		actual = fmt.Sprint(e.Actual)
	}
	return fmt.Sprintf("flux: concurrency conflict on stream %q: expected version %s, actual %s; reload and retry",
		e.StreamID, e.Expected, actual)
}

// Is reports whether target is ErrConcurrencyConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConcurrencyConflict }

// EventTooLargeError reports an event whose encoded payload exceeds the
// store's limit. It matches ErrEventTooLarge.
type EventTooLargeError struct {
	StreamID  string
	EventName string
	Size      int
	Limit     int
}

func (e *EventTooLargeError) Error() string {
	return fmt.Sprintf("flux: event %s on stream %q is %d bytes, over the %d-byte limit; keep large data outside the event",
		e.EventName, e.StreamID, e.Size, e.Limit)
}

// Is reports whether target is ErrEventTooLarge.
func (e *EventTooLargeError) Is(target error) bool { return target == ErrEventTooLarge }

// EventError reports a failure to read one stored event: decoding, upcasting
// or decrypting it. It names the stream, version and event, never the
// payload. Unwrap gives the cause (ErrCorruptEvent, ErrUnknownEvent, ...).
type EventError struct {
	StreamID      string
	StreamVersion int64
	Position      int64
	EventName     string
	EventVersion  int
	Err           error
}

func (e *EventError) Error() string {
	return fmt.Sprintf("flux: stream %q version %d (position %d) event %s v%d: %v",
		e.StreamID, e.StreamVersion, e.Position, e.EventName, e.EventVersion, e.Err)
}

func (e *EventError) Unwrap() error { return e.Err }

// errorf returns an error that wraps sentinel with a formatted explanation.
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}

// IdempotencyError reports that a command with the same idempotency key
// already ran. It matches ErrDuplicateCommand and carries the stored record.
type IdempotencyError struct {
	Record IdempotencyRecord
}

func (e *IdempotencyError) Error() string {
	return fmt.Sprintf("flux: duplicate command: idempotency key %q was first used at %s; returning its first outcome",
		e.Record.Key, e.Record.CreatedAt.UTC().Format(time.RFC3339))
}

// Is reports whether target is ErrDuplicateCommand.
func (e *IdempotencyError) Is(target error) bool { return target == ErrDuplicateCommand }
