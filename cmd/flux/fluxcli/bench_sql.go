package fluxcli

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/jackc/pgx/v5/pgxpool"
)

// sqlRaw is the raw database/sql baseline for MySQL: one INSERT per row in
// a transaction, the same columns as the store, ids from a range of their
// own (the raw baseline has no log head).
type sqlRaw struct {
	db      *sql.DB
	table   string
	dialect string
	nextID  atomic.Int64
}

func (r *sqlRaw) ph(query string) string {
	if r.dialect != "postgres" {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

const rawColumns = "id, event_id, aggregate_id, aggregate_type, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id, version"

func (r *sqlRaw) insert(ctx context.Context, stream string, from int64, n int, payload []byte) error {
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, r.ph(`INSERT INTO `+r.table+` (`+rawColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`))
	if err != nil {
		return err
	}
	defer stmt.Close()
	now := time.Now().UTC()
	for i := 0; i < n; i++ {
		id := benchIDs.New()
		pos := 1_000_000_000_000 + r.nextID.Add(1)
		if _, err := stmt.ExecContext(ctx, pos, id, stream, "Account", "Deposited", 1, string(payload), nil, now, flux.DefaultRequestID, id, "", from+int64(i)+1); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (r *sqlRaw) load(ctx context.Context, stream string) (int, error) {
	rows, err := r.db.QueryContext(ctx, r.ph(`SELECT `+rawColumns+` FROM `+r.table+` WHERE aggregate_id = ? ORDER BY version`), stream)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		if err := r.scan(rows, nil); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

func (r *sqlRaw) scan(rows *sql.Rows, pos *int64) error {
	var id, version int64
	var evVersion int
	var stream, aggType, eventID, name, req, corr, caus string
	var payload []byte
	var metadata sql.NullString
	var occurred time.Time
	err := rows.Scan(&id, &eventID, &stream, &aggType, &name, &evVersion, &payload, &metadata, &occurred, &req, &corr, &caus, &version)
	if pos != nil {
		*pos = id
	}
	return err
}

// scanLog reads the log up to upTo in pages of 500 rows.
func (r *sqlRaw) scanLog(ctx context.Context, upTo int64) (int, error) {
	var last int64 = -1
	n := 0
	for {
		rows, err := r.db.QueryContext(ctx, r.ph(`SELECT `+rawColumns+` FROM `+r.table+` WHERE id > ? AND id <= ? ORDER BY id LIMIT 500`), last, upTo)
		if err != nil {
			return n, err
		}
		got := 0
		for rows.Next() {
			if err := r.scan(rows, &last); err != nil {
				rows.Close()
				return n, err
			}
			got++
		}
		rows.Close()
		n += got
		if got == 0 {
			return n, nil
		}
	}
}

func (r *sqlRaw) Close() error { return nil }

// pgxRaw is the raw pgx baseline for PostgreSQL, with the same statements
// as sqlRaw on a native pgx pool.
type pgxRaw struct {
	pool   *pgxpool.Pool
	table  string
	nextID atomic.Int64
}

func (r *pgxRaw) insert(ctx context.Context, stream string, from int64, n int, payload []byte) error {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	now := time.Now().UTC()
	for i := 0; i < n; i++ {
		id := benchIDs.New()
		pos := 1_000_000_000_000 + r.nextID.Add(1)
		if _, err := tx.Exec(ctx, `INSERT INTO `+r.table+` (`+rawColumns+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)`,
			pos, id, stream, "Account", "Deposited", 1, string(payload), nil, now, flux.DefaultRequestID, id, "", from+int64(i)+1); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

func (r *pgxRaw) rows(ctx context.Context, query string, args ...any) (int, int64, error) {
	rows, err := r.pool.Query(ctx, query, args...)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	n, last := 0, int64(-1)
	for rows.Next() {
		var id, version int64
		var evVersion int32
		var stream, aggType, eventID, name, req, corr, caus string
		var payload []byte
		var metadata []byte
		var occurred time.Time
		if err := rows.Scan(&id, &eventID, &stream, &aggType, &name, &evVersion, &payload, &metadata, &occurred, &req, &corr, &caus, &version); err != nil {
			return n, last, err
		}
		n, last = n+1, id
	}
	return n, last, rows.Err()
}

func (r *pgxRaw) load(ctx context.Context, stream string) (int, error) {
	n, _, err := r.rows(ctx, `SELECT `+rawColumns+` FROM `+r.table+` WHERE aggregate_id = $1 ORDER BY version`, stream)
	return n, err
}

func (r *pgxRaw) scanLog(ctx context.Context, upTo int64) (int, error) {
	var last int64 = -1
	total := 0
	for {
		n, l, err := r.rows(ctx, `SELECT `+rawColumns+` FROM `+r.table+` WHERE id > $1 AND id <= $2 ORDER BY id LIMIT 500`, last, upTo)
		if err != nil || n == 0 {
			return total, err
		}
		total, last = total+n, l
	}
}

func (r *pgxRaw) Close() error { return nil }
