package sqlitestore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/projection"
)

var (
	_ projection.TxStore[*sql.Tx] = (*Store)(nil)
	_ projection.Waker            = (*Store)(nil)
)

// ProjectTx implements projection.TxStore: fn writes the read model in the
// same SQLite transaction that moves the checkpoint, so a projection whose
// read model lives in this database applies every event exactly once.
func (s *Store) ProjectTx(ctx context.Context, from int64, cp projection.Checkpoint, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if s.closed.Load() {
		return flux.ErrStoreClosed
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return s.writeError(ctx, "project "+cp.Name, err)
	}
	defer tx.Rollback()
	if err := moveCheckpoint(ctx, tx, from, cp); err != nil {
		return s.checkpointError(ctx, "project "+cp.Name, err)
	}
	if err := fn(ctx, tx); err != nil {
		return err
	}
	return s.writeError(ctx, "project "+cp.Name, tx.Commit())
}

// checkpointError returns a *projection.CheckpointBehindError as it is,
// other errors through writeError.
func (s *Store) checkpointError(ctx context.Context, what string, err error) error {
	if behind, ok := errors.AsType[*projection.CheckpointBehindError](err); ok {
		return behind
	}
	return s.writeError(ctx, what, err)
}

// sqlExec is a *sql.DB or a *sql.Tx.
type sqlExec interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// moveCheckpoint moves cp.Name from position from (0: none stored) to
// cp.Position in one conditional statement, or returns a
// *projection.CheckpointBehindError telling where it is stored.
func moveCheckpoint(ctx context.Context, ex sqlExec, from int64, cp projection.Checkpoint) error {
	var (
		r   sql.Result
		err error
	)
	if from == 0 {
		r, err = ex.ExecContext(ctx, `INSERT INTO projection_checkpoints (name, position, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at
			WHERE projection_checkpoints.position = 0`, cp.Name, cp.Position, formatTime(cp.UpdatedAt))
	} else {
		r, err = ex.ExecContext(ctx, `UPDATE projection_checkpoints SET position = ?, updated_at = ? WHERE name = ? AND position = ?`,
			cp.Position, formatTime(cp.UpdatedAt), cp.Name, from)
	}
	if err != nil {
		return err
	}
	n, err := r.RowsAffected()
	if err != nil || n == 1 {
		return err
	}
	var stored int64
	err = ex.QueryRowContext(ctx, `SELECT position FROM projection_checkpoints WHERE name = ?`, cp.Name).Scan(&stored)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	return &projection.CheckpointBehindError{Name: cp.Name, Supersedes: from, Position: cp.Position, Stored: stored}
}

// Wake implements projection.Waker for subscriptions in this process.
// Appends by other processes are found by polling.
func (s *Store) Wake(ctx context.Context) (<-chan struct{}, error) {
	if s.closed.Load() {
		return nil, flux.ErrStoreClosed
	}
	return s.appended.Subscribe(ctx), nil
}
