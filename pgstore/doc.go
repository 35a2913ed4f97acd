// Package pgstore is the PostgreSQL flux.EventStore, on pgx v5.
//
//	store, err := pgstore.Open(ctx, "postgres://app@db/app", &pgstore.Options{Schema: "flux"})
//	...
//	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg})
//
// Open connects from a DSN and owns its pool; New takes a *pgxpool.Pool the
// application already has and leaves it open on Close. A Store implements
// every part of the storage contract: flux.EventStore, flux.SnapshotStore,
// flux.IdempotencyStore, flux.Inspector, pii.KeyStore,
// projection.CheckpointStore, projection.TxStore[pgx.Tx] and
// projection.Waker, and passes the storetest conformance suite.
//
// # Options
//
// Options.Schema (default "public") is the PostgreSQL schema that holds the
// store's tables; every statement qualifies them with it, so one database
// can hold independent stores (tenants, tests). Options.MaxEventSize
// (default flux.DefaultMaxEventSize, 4 MiB) bounds one payload.
// Options.MaxAppendConns (default half the pool, at least 1) bounds the
// connections appends hold while they queue on the log head, so reads
// always find a connection. Options.SkipMigrate (default false) stops Open
// and New from migrating;
// Options.Logger (default: discard) hears about the LISTEN connection and
// about appends found committed after their COMMIT lost its connection.
//
// # Schema
//
// Migrate (run by Open and New unless SkipMigrate) creates the schema if
// needed and applies the embedded, versioned SQL steps in migrations/ that
// the schema's flux_schema_migrations table does not list yet, in one
// transaction under an advisory lock, so concurrent and repeated calls are
// safe. The tables follow the PHP library's layout:
//
//   - events: id BIGINT (the global position), event_id UUID (unique),
//     aggregate_id, aggregate_type, event_name, event_version, payload
//     JSONB, metadata JSONB (the free-form keys; NULL when none),
//     occurred_on TIMESTAMPTZ (microseconds), request_id, correlation_id,
//     causation_id, version; UNIQUE (aggregate_id, version), indexes on
//     occurred_on and correlation_id. The layout's separate index on
//     aggregate_id is left out on purpose (see migrations/0001_events.sql).
//   - aggregate_snapshots, encryption_keys (one wrapped data key per
//     user_id), forgotten_subjects, idempotency_keys,
//     projection_checkpoints;
//   - log_head: one row, the highest position handed out.
//
// JSONB normalises whitespace and key order, and cannot store every valid
// JSON text: it refuses the escape \u0000 (and unpaired UTF-16 surrogates,
// which flux.ValidateAppend refuses on every backend, as it refuses nesting
// deeper than flux.MaxJSONDepth). A payload or snapshot holding \u0000
// keeps an exact copy in a json column beside the jsonb one (which then
// holds U+FFFD in its place, for queries), and reads return the exact copy,
// so every payload reads back with the meaning it was written with. A number beyond the range of
// PostgreSQL's numeric type is refused with flux.ErrInvalidAppend naming
// the stream, and so is text PostgreSQL cannot store at all — a NUL
// character or invalid UTF-8 in names, metadata or keys — before any I/O.
//
// # Global log order
//
// Every append transaction first advances the log-head row (UPDATE ...
// SET position = position + n RETURNING position) and numbers its events
// below the new value. The row lock serialises appends: the next one
// proceeds only once this one has committed (or rolled back, taking its
// increment with it), and PostgreSQL makes the commit visible before it
// releases the lock. Positions are therefore handed out in commit order and
// stay dense, so a reader that resumes after the last position it saw
// (ReadAll with After) never skips an event, and Head minus a checkpoint is
// exactly the number of events still to read. Readers take no lock, and
// since appends hold at most Options.MaxAppendConns connections, readers
// keep answering while appends queue.
//
// Every transaction begins at READ COMMITTED, whatever the session's
// default_transaction_isolation: the waiting append must read the head its
// predecessor committed. A serialization failure or deadlock the server
// reports anyway (40001, 40P01; with other programs' transactions) is
// returned as flux.ErrTransient, which flux.RetryOnConflict retries.
//
// The price is that appends do not overlap: total append throughput is
// bounded by one append's latency, dominated by its commit (one WAL flush),
// where independent inserts would share flushes. BenchmarkAppendConcurrent4
// measures it against four unserialised raw writers. The alternative the
// design map mentions — positions from a sequence, with readers holding
// back behind the oldest in-progress transaction ID — keeps writers
// parallel at the cost of a more complex reader; this package chose the
// simple, obviously correct one.
//
// # Optimistic concurrency
//
// UNIQUE (aggregate_id, version) and the INSERT statements decide every
// race, never a read in Go: an exact expected version is checked by the
// INSERT itself (it inserts nothing unless the stream is at that version),
// flux.NoStream inserts from version 1 and meets the unique constraint if
// the stream exists, and flux.Any continues from the stream's current
// version read in the same statement. A lost race is a *flux.ConflictError
// naming the stream, the expected and the actual version. An append is two
// round trips however many streams and events it has: a pgx.Batch (BEGIN,
// the log head, the idempotency key, one multi-row INSERT per stream from
// unnest()ed arrays, the snapshots), then COMMIT.
//
// # Wake
//
// Each append sends a NOTIFY on a channel named after the schema, which
// PostgreSQL delivers at commit to every listening session. The first call
// of Store.Wake opens one connection (outside the pool) that LISTENs and
// fans notifications out to every channel Wake returned; it reconnects with
// backoff if the connection is lost. Wake-ups are hints: they coalesce, and
// subscriptions keep polling.
//
// # Errors
//
// Driver errors are translated in one place (interpretError): a done
// context gives an error matching context.Canceled or
// context.DeadlineExceeded (Open's pool cancels the running statement
// rather than dropping the connection); a lost connection or unreachable
// server gives flux.ErrStoreUnavailable, and a failed write says what
// became of it — "nothing was committed", or, when the connection broke
// after COMMIT was sent — and the store could not find out on a new
// connection whether the append committed — that the outcome is unknown.
// Dead pooled connections found when a transaction or read begins are
// replaced transparently, so a store recovers from a server restart without
// help.
//
// # Testing
//
// The tests run against the server named by FLUX_TEST_POSTGRES_DSN and
// skip without it (fail with FLUX_TEST_REQUIRE set); each store gets a
// schema of its own, dropped afterwards. The database-restart test starts a
// private server from the PostgreSQL binaries and never touches the shared
// one.
package pgstore
