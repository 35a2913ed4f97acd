package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"

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
	var r sql.Result
	if from == 0 {
		r, err = tx.ExecContext(ctx, `INSERT INTO projection_checkpoints (name, position, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at
			WHERE projection_checkpoints.position = 0`, cp.Name, cp.Position, formatTime(cp.UpdatedAt))
	} else {
		r, err = tx.ExecContext(ctx, `UPDATE projection_checkpoints SET position = ?, updated_at = ? WHERE name = ? AND position = ?`,
			cp.Position, formatTime(cp.UpdatedAt), cp.Name, from)
	}
	if err != nil {
		return s.writeError(ctx, "project "+cp.Name, err)
	}
	if n, err := r.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("%w: projection %q is no longer at position %d", projection.ErrCheckpointMoved, cp.Name, from)
	}
	if err := fn(ctx, tx); err != nil {
		return err
	}
	return s.writeError(ctx, "project "+cp.Name, tx.Commit())
}

// Wake implements projection.Waker for subscriptions in this process.
// Appends by other processes are found by polling.
func (s *Store) Wake(ctx context.Context) (<-chan struct{}, error) {
	if s.closed.Load() {
		return nil, flux.ErrStoreClosed
	}
	return s.appended.Subscribe(ctx), nil
}
