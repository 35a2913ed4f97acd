// Package flux is the core of FluxCapacitor, an event-sourcing and CQRS
// framework: aggregates that raise versioned events, a repository that
// stores and rebuilds them, and command, query and event buses around it.
//
// The package is for applications. Storage lives behind the EventStore
// interface, implemented by memstore (in memory, in this module) and by the
// sqlitestore, pgstore and mysqlstore modules; a backend is held to the
// contract by the conformance suite in storetest.
//
// # Aggregates and events
//
// An aggregate embeds Root, applies its own events in Apply and raises new
// ones with Raise. A Registry, built once with NewRegistry, maps aggregate
// and event names to Go types (AggregateType, EventType), with the
// upcasters of old event versions (Upcast, UpcastRenamed) and the snapshot
// policy of each aggregate type (Snapshots). There is no global registry.
//
// # The repository
//
// NewRepository takes a Config (store, registry, and optional clock, ID
// generator, logger, publisher, observer and personal-data protector).
// Save appends the pending events of several aggregates in one atomic
// append, each stream checked against the version it was loaded at: a lost
// race is a *ConflictError matching ErrConcurrencyConflict. Load rebuilds an
// aggregate from its latest compatible snapshot and the events after it;
// LoadAt and LoadVersion rebuild it as it was at a time or version, and
// Repository.Events reads one stream's events decoded (Envelope).
//
// # Commands, queries and events
//
// A CommandBus runs each command in a unit of work (aggregates loaded or
// passed to Track are saved together when the handler returns nil),
// through Middleware such as Logging and RetryOnConflict, with idempotency
// keys (WithIdempotencyKey). A QueryBus answers typed queries (Ask). An
// EventBus, given as Config.Publisher, calls in-process handlers after each
// commit (OnEvent).
//
// # Metadata and correlation
//
// Every event carries Metadata: the request ID, correlation and causation
// IDs and free keys, taken from the context (WithRequestID,
// WithCorrelationID, WithMetadata, RequestIDMiddleware). Never put personal
// data in metadata; it is stored in clear.
//
// # Personal data
//
// Fields tagged `pii:"data"` are encrypted per data subject by the
// Config.Protector (package pii) before they reach the store; forgetting a
// subject deletes its key, and its events then decode with replacement
// values (Envelope.Forgotten, ErrSubjectForgotten).
//
// # Errors
//
// Sentinel errors (ErrConcurrencyConflict, ErrValueTaken, ...) are matched
// with errors.Is; typed errors (*ConflictError, *EventError, ...) carry the
// stream, version and event they are about.
package flux
