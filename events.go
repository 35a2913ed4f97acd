package flux

import "time"

// The event vocabulary: one event as the application writes it
// (EventData), as it is stored (Record, with its Metadata), and as it is
// read back decoded (Envelope).

// EventData is an encoded event ready to be stored. Its stream version and
// global position are assigned by the store.
type EventData struct {
	EventID      string
	EventName    string
	EventVersion int
	Payload      []byte
	Metadata     Metadata
	OccurredAt   time.Time
}

// Record is one stored event as the store sees it: raw payload bytes plus
// everything needed to place it.
type Record struct {
	// Position in the global log; increasing in commit order, starting at 1.
	Position int64
	// StreamID is the aggregate ID.
	StreamID string
	// StreamVersion is the event's version within its stream, from 1.
	StreamVersion int64
	// AggregateType is the registered aggregate type name.
	AggregateType string
	// EventID is a UUID unique to this event.
	EventID string
	// EventName and EventVersion are the registered name and schema version
	// the payload was written with.
	EventName    string
	EventVersion int
	// Payload is the encoded event (JSON), with personal data encrypted.
	Payload []byte
	// Metadata carries request, correlation and causation IDs and free keys.
	Metadata Metadata
	// OccurredAt is when the event was saved, UTC, microsecond precision.
	// Times never decrease along the global log, and so never within a
	// stream (see StampTimes).
	OccurredAt time.Time
}

// Metadata travels with every event. The well-known IDs have their own
// fields (and columns, so they can be searched); Extra holds free-form keys
// such as trace context. Never put personal data in metadata: it is stored
// in clear.
type Metadata struct {
	// RequestID identifies the incoming request (X-Request-ID); it is
	// DefaultRequestID when none was given.
	RequestID string `json:"request_id,omitempty"`
	// CorrelationID is shared by every command and event of one business
	// transaction, across services.
	CorrelationID string `json:"correlation_id,omitempty"`
	// CausationID is the ID of the message (command or event) that caused
	// this event.
	CausationID string `json:"causation_id,omitempty"`
	// Extra holds application keys. Nil when there are none.
	Extra map[string]string `json:"extra,omitempty"`
}

// Envelope is a stored event decoded into its Go type, with the record it
// was read from.
type Envelope struct {
	// Record is the event as stored: its payload is the stored JSON
	// (personal data encrypted), its EventName and EventVersion those it
	// was written with.
	Record
	// Event is a value of the event's registered Go type, upcast to the
	// current version.
	Event any
	// Name and Version are Event's registered name and schema version;
	// they differ from Record's after an upcast or rename.
	Name    string
	Version int
	// Forgotten lists the personal-data fields of Event whose subject was
	// forgotten: they hold replacement values.
	Forgotten []string
}
