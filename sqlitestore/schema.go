package sqlitestore

import (
	"context"
	"database/sql"
)

// A migration is one schema step: a script, or Go code for a step that
// reports what it changed. All pending steps run in one transaction.
type migration struct {
	script string
	apply  func(ctx context.Context, tx *sql.Tx, m *Migration) error
}

// migrations are applied in order; PRAGMA user_version records how many ran.
// Never edit a step that has shipped: append a new one.
var migrations = []migration{
	// 1: the events table, after the PHP library's layout (global id,
	// aggregate id, aggregate type, event name, event version, payload JSON,
	// occurred on, request id, version) plus the event ID, correlation and
	// causation IDs and the free-form metadata.
	{script: `CREATE TABLE IF NOT EXISTS events (
		id             INTEGER PRIMARY KEY,  -- global position, assigned in commit order
		event_id       TEXT    NOT NULL,
		aggregate_id   TEXT    NOT NULL,
		aggregate_type TEXT    NOT NULL,
		event_name     TEXT    NOT NULL,
		event_version  INTEGER NOT NULL DEFAULT 1,
		payload        TEXT    NOT NULL,     -- JSON
		metadata       TEXT,                 -- JSON object of extra keys, NULL when none
		occurred_on    TEXT    NOT NULL,     -- UTC, 2006-01-02T15:04:05.000000Z
		request_id     TEXT    NOT NULL,
		correlation_id TEXT    NOT NULL DEFAULT '',
		causation_id   TEXT    NOT NULL DEFAULT '',
		version        INTEGER NOT NULL,
		CONSTRAINT unique_aggregate_version UNIQUE (aggregate_id, version),
		CONSTRAINT unique_event_id UNIQUE (event_id)
	);
	CREATE INDEX IF NOT EXISTS idx_events_aggregate_id ON events (aggregate_id);
	CREATE INDEX IF NOT EXISTS idx_events_occurred_on ON events (occurred_on);
	CREATE INDEX IF NOT EXISTS idx_events_correlation_id ON events (correlation_id);`},
	// 2: snapshots (the PHP library's aggregate_snapshots plus the
	// snapshot schema version), data keys (its encryption_keys),
	// tombstones of forgotten subjects, idempotency keys and projection
	// checkpoints.
	{script: `CREATE TABLE IF NOT EXISTS aggregate_snapshots (
		id             INTEGER PRIMARY KEY,
		aggregate_id   TEXT    NOT NULL,
		aggregate_type TEXT    NOT NULL,
		version        INTEGER NOT NULL,
		schema_version INTEGER NOT NULL DEFAULT 1,
		data           TEXT    NOT NULL,  -- JSON, personal data encrypted
		created_at     TEXT    NOT NULL,  -- occurred-at of the snapshot's last event
		CONSTRAINT unique_snapshot_aggregate_version UNIQUE (aggregate_id, version)
	);
	CREATE INDEX IF NOT EXISTS idx_snapshots_aggregate_id ON aggregate_snapshots (aggregate_id);
	CREATE INDEX IF NOT EXISTS idx_snapshots_aggregate_version ON aggregate_snapshots (aggregate_id, version DESC);
	CREATE TABLE IF NOT EXISTS encryption_keys (
		id             INTEGER PRIMARY KEY,
		user_id        TEXT NOT NULL,
		encryption_key TEXT NOT NULL,      -- wrapped by the key-encryption key, never in clear
		created_at     TEXT NOT NULL,
		updated_at     TEXT NOT NULL,
		CONSTRAINT unique_user_id UNIQUE (user_id)
	);
	CREATE TABLE IF NOT EXISTS forgotten_subjects (
		user_id      TEXT PRIMARY KEY,
		forgotten_at TEXT NOT NULL,
		forgotten_by TEXT NOT NULL DEFAULT '',
		reason       TEXT NOT NULL DEFAULT ''
	);
	CREATE TABLE IF NOT EXISTS idempotency_keys (
		idempotency_key TEXT PRIMARY KEY,
		result          BLOB NOT NULL,
		created_at      TEXT NOT NULL
	);
	CREATE TABLE IF NOT EXISTS projection_checkpoints (
		name       TEXT PRIMARY KEY,
		position   INTEGER NOT NULL,
		updated_at TEXT NOT NULL
	);`},
	// 3: JSON is TEXT, never BLOB (see text.go). Versions before bound
	// event payloads and idempotency results as BLOBs: convert those rows,
	// and rebuild idempotency_keys, whose result column was declared BLOB.
	{apply: jsonAsText},
}

// textColumns are the columns holding JSON, stored as TEXT from schema
// version 3 on.
var textColumns = []struct{ table, column string }{
	{"events", "payload"},
	{"events", "metadata"},
	{"aggregate_snapshots", "data"},
	{"idempotency_keys", "result"},
}

// jsonAsText is migration 3. CAST keeps the bytes: the database encoding is
// UTF-8, and the values were written as UTF-8 JSON. The UPDATEs touch no
// index (none covers these columns) and rewrite only the BLOB rows.
func jsonAsText(ctx context.Context, tx *sql.Tx, m *Migration) error {
	for _, c := range textColumns {
		r, err := tx.ExecContext(ctx, `UPDATE `+c.table+` SET `+c.column+` = CAST(`+c.column+` AS TEXT) WHERE typeof(`+c.column+`) = 'blob'`)
		if err != nil {
			return err
		}
		n, err := r.RowsAffected()
		if err != nil {
			return err
		}
		if n > 0 {
			if m.Converted == nil {
				m.Converted = make(map[string]int64)
			}
			m.Converted[c.table+"."+c.column] += n
		}
	}
	// SQLite cannot change a column's declared type in place: copy the
	// table into one declared with TEXT and swap it in.
	_, err := tx.ExecContext(ctx, `CREATE TABLE idempotency_keys_v3 (
		idempotency_key TEXT PRIMARY KEY,
		result          TEXT NOT NULL,      -- JSON
		created_at      TEXT NOT NULL
	);
	INSERT INTO idempotency_keys_v3 (idempotency_key, result, created_at)
		SELECT idempotency_key, result, created_at FROM idempotency_keys;
	DROP TABLE idempotency_keys;
	ALTER TABLE idempotency_keys_v3 RENAME TO idempotency_keys;`)
	return err
}
