package fluxcli

import (
	"context"
	"database/sql"
	"net/url"

	"github.com/fluxcapacitor/flux"
)

// sqliteRaw is the raw modernc.org/sqlite baseline, with the store's own
// settings (WAL, synchronous NORMAL, BEGIN IMMEDIATE, busy timeout).
type sqliteRaw struct{ db *sql.DB }

func newSQLiteRaw(path string) (*sqliteRaw, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return &sqliteRaw{db: db}, nil
}

func (r *sqliteRaw) insert(ctx context.Context, stream string, from int64, n int, payload []byte) error {
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO events (event_id, aggregate_id, aggregate_type, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id, version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	now := benchTime()
	for i := 0; i < n; i++ {
		id := benchIDs.New()
		if _, err := stmt.ExecContext(ctx, id, stream, "Account", "Deposited", 1, string(payload), nil, now, flux.DefaultRequestID, id, "", from+int64(i)+1); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (r *sqliteRaw) load(ctx context.Context, stream string) (int, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT id, aggregate_id, version, aggregate_type, event_id, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id FROM events WHERE aggregate_id = ? ORDER BY version`, stream)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		if err := scanRawRow(rows); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

func (r *sqliteRaw) scanLog(ctx context.Context, upTo int64) (int, error) {
	var last int64
	n := 0
	for {
		rows, err := r.db.QueryContext(ctx, `SELECT id, aggregate_id, version, aggregate_type, event_id, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT 500`, last, upTo)
		if err != nil {
			return n, err
		}
		got := 0
		for rows.Next() {
			var pos int64
			if err := scanRawRow(rows, &pos); err != nil {
				rows.Close()
				return n, err
			}
			last = pos
			got++
		}
		rows.Close()
		n += got
		if got == 0 {
			return n, nil
		}
	}
}

func (r *sqliteRaw) Close() error { return r.db.Close() }

// scanRawRow scans the 13 event columns into plain values.
func scanRawRow(rows *sql.Rows, pos ...*int64) error {
	var id, version int64
	var evVersion int
	var stream, aggType, eventID, name, occurred, req, corr, caus string
	var payload []byte
	var metadata sql.NullString
	err := rows.Scan(&id, &stream, &version, &aggType, &eventID, &name, &evVersion, &payload, &metadata, &occurred, &req, &corr, &caus)
	if len(pos) > 0 {
		*pos[0] = id
	}
	return err
}
