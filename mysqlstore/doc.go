// Package mysqlstore is the flux.EventStore for MySQL 8 and MariaDB 10.11
// and later, through github.com/go-sql-driver/mysql. It also implements
// flux.SnapshotStore, flux.IdempotencyStore, flux.Inspector, pii.KeyStore,
// projection.CheckpointStore, projection.TxStore[*sql.Tx] and
// projection.Waker, and passes the storetest conformance suite.
//
//	store, err := mysqlstore.Open(ctx, "flux:secret@tcp(db:3306)/shop", nil)
//	...
//	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg})
//
// Open takes a DSN and owns the pools it creates; New takes a *sql.DB the
// application opened and leaves it open on Close. Both check the server
// and run Migrate unless Options.SkipMigrate is set.
//
// # Global log order
//
// Readers of the global log (projections, relays) resume after the last
// position they saw, so positions must be handed out in commit order and
// be dense: a rolled-back append must leave no hole, and no append may
// commit a position below one a reader has already seen. AUTO_INCREMENT
// gives neither: ids are taken at insert time, transactions commit in
// another order, and rollbacks lose ids.
//
// The store therefore keeps the last position in a one-row table,
// flux_log_head. Every append begins with
//
//	UPDATE flux_log_head SET position = LAST_INSERT_ID(position + n) WHERE id = 1
//
// which locks the row, moves it past the n positions the append needs and
// returns the new value in the same round trip; the events are then
// inserted with those explicit ids. InnoDB holds the row lock until the
// transaction commits or rolls back, so appends run one at a time: the
// next append reads the head only once the previous one has committed
// (and continues after it) or rolled back (and reuses its positions). A
// named lock (GET_LOCK) would not do: it is not released by the commit.
//
// The price is that appends are serialised from the head UPDATE to
// COMMIT: one append's round trips and commit bound the write throughput
// of the whole store, however many writers there are.
// BenchmarkAppendConcurrent4 measures it: four writers on four streams
// reached about half the throughput of the same inserts with
// AUTO_INCREMENT ids and no head (MariaDB 10.11 on the same host, two
// CPUs). Reads never touch the head, and neither do key, checkpoint and
// projection transactions.
//
// Every writer must go through flux: a program inserting into events with
// AUTO_INCREMENT ids (such as the PHP library) would take positions the
// head hands out later, and that append fails naming the position.
//
// # Optimistic concurrency
//
// UNIQUE (aggregate_id, version) rejects a second event at a version,
// whoever writes it: a stale expectation fails on it. An expectation
// beyond the stream's version would pass the key and leave a gap, so an
// exact expectation is also checked by the INSERT of the first event,
// INSERT ... SELECT ... WHERE EXISTS (the event at the expected version):
// if that row is not inserted, the append fails. (Outside the
// one-round-trip path described under Options, a stream with more than
// four events has its version read first instead.) Any reads the current
// version inside the transaction. All of this runs
// after the head is taken, when no other append can change the stream. A
// failed expectation is a *flux.ConflictError carrying the actual
// version; NoStream is left to the unique key alone.
//
// # Tables
//
// The layout follows the PHP library's schema, so teams migrating can
// recognise it:
//
//   - events: the PHP columns (id = global position, aggregate_id,
//     aggregate_type, event_name, event_version, payload JSON, occurred_on,
//     request_id, version) and indexes (idx_aggregate_id,
//     idx_aggregate_version, idx_occurred_on, unique_aggregate_version),
//     plus event_id (unique), correlation_id (indexed), causation_id and
//     metadata (JSON, NULL when there are no extra keys). occurred_on is
//     DATETIME(6) holding UTC, not TIMESTAMP (which converts through the
//     session time zone and ends in 2038); version is BIGINT.
//   - aggregate_snapshots: the PHP layout plus schema_version.
//   - encryption_keys: the PHP layout (user_id unique, encryption_key
//     TEXT holding the wrapped key, created_at, updated_at).
//   - forgotten_subjects, idempotency_keys, projection_checkpoints,
//     flux_log_head and flux_schema_migrations are flux's own.
//
// Everything is utf8mb4. Identifier columns (stream IDs, names, keys) use
// a binary NO PAD collation (utf8mb4_nopad_bin on MariaDB,
// utf8mb4_0900_bin on MySQL) so that IDs differing in case or trailing
// spaces are different streams; a VARCHAR(255) of 4-byte characters still
// fits InnoDB's 3072-byte index key limit. Migrate refuses to adopt a
// table of the same name in another layout (the PHP library's events table
// lacks event_id): add the missing columns first.
//
// # Options and connection settings
//
// Options documents every default: MaxEventSize (flux.DefaultMaxEventSize,
// and it must fit the server's max_allowed_packet), MaxOpenConns (10),
// ConnMaxLifetime (3 minutes), DeadlockRetries (3), SkipMigrate (false),
// Logger (discard). Open forces the DSN settings the store relies on
// (parseTime, loc=UTC, interpolateParams, maxAllowedPacket=0,
// checkConnLiveness; see Open) and opens two pools: appends run on
// connections with autocommit=0 and multiStatements, where the head
// UPDATE itself starts the transaction and travels with the INSERT of a
// typical save, which then takes two round trips (UPDATE and INSERT
// together, COMMIT) against three for a plain transaction with one
// INSERT. Everything else, and DB, uses the first pool, without
// multiStatements. New runs appends in ordinary transactions on the
// caller's pool. The events of a stream go in multi-row INSERTs (never a
// statement per event), split so that no statement exceeds
// max_allowed_packet.
//
// # Errors
//
// A lost connection or a database going away is flux.ErrStoreUnavailable,
// saying that the connection was lost and the transaction rolled back; if
// it broke during COMMIT the store asks the database on a new connection
// whether the append was written, and says so when it cannot tell. A
// cancelled context matches context.Canceled or context.DeadlineExceeded.
// After the server comes back the same Store works again: the pool
// replaces dead connections.
package mysqlstore
