package pgstore

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// Reads and dead connections.
//
// A pooled connection can be dead before it is used: the server restarted
// or ended an idle session, a proxy or firewall dropped it, a failover
// moved the address. pgxpool pings only connections idle for over a
// second, and pgx reports such a connection when the query is written or
// its first answer read. Every read of the store therefore goes through
// query (or reader().QueryRow), which runs the statement again on another
// connection when it failed that way before any row was read: a read
// changes nothing, so running it again is always safe. Enough attempts are
// made to get past every idle connection of the pool (staleRetries), so a
// pool whose connections all died recovers within one call.

// query runs a read statement through the pool, retried as described above.
func (s *Store) query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	retries := s.staleRetries()
	for ; err != nil && retries > 0 && s.stale(ctx, err); retries-- {
		rows, err = s.pool.Query(ctx, sql, args...)
	}
	if err != nil {
		return rows, err
	}
	return &retryRows{Rows: rows, s: s, ctx: ctx, sql: sql, args: args, retries: retries}, nil
}

// retryRows are the rows of query: pgx reports most dead connections
// only once the rows are read, so the first Next runs the statement again
// when the connection proved dead before the first row.
type retryRows struct {
	pgx.Rows
	s       *Store
	ctx     context.Context
	sql     string
	args    []any
	retries int
	started bool  // a row was read: no more retries
	err     error // a retry failed to start
}

func (r *retryRows) Next() bool {
	for {
		if r.err != nil {
			return false
		}
		if r.Rows.Next() {
			r.started = true
			return true
		}
		err := r.Rows.Err()
		if r.started || err == nil || r.retries <= 0 || !r.s.stale(r.ctx, err) {
			return false
		}
		r.Rows.Close()
		r.retries--
		rows, err := r.s.pool.Query(r.ctx, r.sql, r.args...)
		if err != nil {
			if r.retries > 0 && r.s.stale(r.ctx, err) {
				continue // r.Rows is closed and reports its error: try again
			}
			r.err = err
			return false
		}
		r.Rows = rows
	}
}

func (r *retryRows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.Rows.Err()
}

// reader returns a rowQuerier whose QueryRow reads through query.
func (s *Store) reader() rowQuerier { return readQuerier{s} }

type readQuerier struct{ s *Store }

func (q readQuerier) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return retryRow{q.s, ctx, sql, args}
}

type retryRow struct {
	s    *Store
	ctx  context.Context
	sql  string
	args []any
}

// Scan reads the first row, as pgx's Row does: pgx.ErrNoRows when there
// is none.
func (r retryRow) Scan(dest ...any) error {
	rows, err := r.s.query(r.ctx, r.sql, r.args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}
