package mysqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"time"
)

// querier is what the append's statements need: *sql.Tx, *sql.Conn and
// *sql.DB all have it.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// writeTx is an append's transaction: either a *sql.Tx, or a connection
// of the append pool (see beginAppend).
type writeTx struct {
	querier
	tx   *sql.Tx   // the pool New was given
	conn *sql.Conn // Open's append pool
	done bool
}

// beginAppend starts an append's transaction.
//
// On a pool the caller gave New it is an ordinary *sql.Tx. The pool Open
// creates has a second set of connections for appends, opened with
// autocommit=0 (and multiStatements, see writeBatched): on those the
// server starts a transaction with the first statement, the log head
// UPDATE, which saves the START TRANSACTION round trip. The store then
// ends the transaction itself: COMMIT, or ROLLBACK on every other way
// out, and a connection whose ROLLBACK fails is discarded, never returned
// to the pool with a transaction open.
func (s *Store) beginAppend(ctx context.Context) (*writeTx, error) {
	if s.wdb == nil {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return nil, err
		}
		return &writeTx{querier: tx, tx: tx}, nil
	}
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return &writeTx{querier: conn, conn: conn}, nil
}

// commit commits. A context that is done by now rolls back instead, as
// sql.Tx does; once COMMIT is sent it is not interrupted.
func (w *writeTx) commit(ctx context.Context) error {
	if w.tx != nil {
		return w.tx.Commit()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	_, err := w.conn.ExecContext(context.WithoutCancel(ctx), "COMMIT")
	w.done = err == nil
	return err
}

// rollbackTimeout bounds the ROLLBACK of an append connection.
const rollbackTimeout = 5 * time.Second

// end rolls back unless committed and releases the connection.
func (w *writeTx) end() {
	if w.tx != nil {
		w.tx.Rollback()
		return
	}
	if !w.done {
		ctx, cancel := context.WithTimeout(context.Background(), rollbackTimeout)
		_, err := w.conn.ExecContext(ctx, "ROLLBACK")
		cancel()
		if err != nil {
			// The transaction's state is unknown: discard the connection
			// (the server rolls back what it held when it goes).
			w.conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}
	w.conn.Close()
}
