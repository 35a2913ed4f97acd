package flux

import (
	"context"
	"errors"
)

// Observer is told what FluxCapacitor does, for traces and metrics; module
// fluxotel implements it with OpenTelemetry. Set it in Config.Observer: the
// repository, the command buses over it and projection runners use it. A
// nil Observer costs nothing. Implementations must be safe for concurrent
// use, return quickly, and never receive personal data: operations carry
// IDs, names and counts only.
type Observer interface {
	// Start is called when an operation begins; the returned function is
	// called once with its outcome. The returned context carries whatever
	// the observer needs (a span) into nested operations.
	Start(ctx context.Context, op Operation) (context.Context, func(Outcome))
	// Notice reports a point event: an upcast, a personal-data failure.
	Notice(ctx context.Context, n Notice)
	// TraceMetadata returns metadata keys to store with the events saved
	// under ctx (trace context), so consumers can link back to the
	// operation that wrote them. Keys must not carry personal data.
	TraceMetadata(ctx context.Context) map[string]string
}

// OpKind names an observed operation.
type OpKind string

// Observed operations.
const (
	OpCommand         OpKind = "command"          // a command dispatch (CommandBus)
	OpQuery           OpKind = "query"            // a query (QueryBus)
	OpSave            OpKind = "save"             // Repository.Save / a unit of work's commit
	OpAppend          OpKind = "append"           // the store append inside a save
	OpLoad            OpKind = "load"             // an aggregate rebuild
	OpProjectionBatch OpKind = "projection.batch" // one batch applied by a projection (or the relay)
	OpRelayPublish    OpKind = "relay.publish"    // one batch published to a broker and acknowledged (natsrelay)
)

// Operation describes an observed operation.
type Operation struct {
	Kind OpKind
	// Name is the command or query type, or the projection or relay name.
	Name string
	// AggregateType and StreamID name the aggregate (loads; saves of one).
	AggregateType string
	StreamID      string
	// CorrelationID of the message, save or load (from the context).
	CorrelationID string
	// Events is the number of events to append, or in a projection or
	// relay batch.
	Events int
	// Links holds the stored metadata of the events of a projection or relay batch,
	// for linking to the operations that wrote them (see TraceMetadata).
	Links []map[string]string
}

// Outcome describes how an operation ended.
type Outcome struct {
	Err error
	// Conflict is set when Err is a concurrency conflict.
	Conflict bool
	// EventsReplayed and SnapshotUsed describe a load.
	EventsReplayed int
	SnapshotUsed   bool
	// SnapshotsWritten counts snapshots a save wrote.
	SnapshotsWritten int
	// Position is the last global position of a projection or relay batch.
	Position int64
}

// NoticeKind names a point event.
type NoticeKind string

// Point events.
const (
	// NoticeUpcast: a stored event was read through upcasters.
	NoticeUpcast NoticeKind = "upcast"
	// NoticePersonalData: encrypting or decrypting personal data failed
	// (Reason says why: "tampered", "wrong_secret", "forgotten", ...).
	NoticePersonalData NoticeKind = "personal_data_failure"
)

// Notice describes a point event.
type Notice struct {
	Kind NoticeKind
	// Event is the registered event name (upcasts), or the Go type whose
	// personal data failed.
	Event string
	// FromVersion and ToVersion of an upcast.
	FromVersion, ToVersion int
	// Op is "encrypt" or "decrypt" for personal-data failures.
	Op string
	// Reason classifies a failure, never quoting values.
	Reason string
}

// observe starts op on obs, or does nothing for a nil observer.
func observe(ctx context.Context, obs Observer, op Operation) (context.Context, func(Outcome)) {
	if obs == nil {
		return ctx, func(Outcome) {}
	}
	return obs.Start(ctx, op)
}

// failureReason classifies a personal-data error for NoticePersonalData.
func failureReason(err error) string {
	var r interface{ Reason() string }
	if errors.As(err, &r) {
		return r.Reason()
	}
	return "other"
}
