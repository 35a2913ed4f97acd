package mysqlstore

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
// same transaction that moves the checkpoint, so a projection whose read
// model lives in this database applies every event exactly once.
//
// The checkpoint row is locked first (SELECT ... FOR UPDATE; a first
// checkpoint is inserted), so of several runners starting from the same
// position one moves it and the others, once it commits, find it moved
// (a *projection.CheckpointBehindError, matching
// projection.ErrCheckpointMoved) before fn runs. A runner that InnoDB
// picks as a deadlock victim before fn runs starts over
// (Options.DeadlockRetries); fn's own errors are returned as they are.
//
// fn must not run DDL (CREATE TABLE ...): MySQL commits the transaction
// implicitly before DDL. Create read-model tables beforehand.
func (s *Store) ProjectTx(ctx context.Context, from int64, cp projection.Checkpoint, fn func(ctx context.Context, tx *sql.Tx) error) error {
	if s.closed.Load() {
		return flux.ErrStoreClosed
	}
	if err := checkName("checkpoint name", cp.Name); err != nil {
		return err
	}
	op := "project " + quote(cp.Name)
	for attempt := 0; ; attempt++ {
		retry, err := s.projectOnce(ctx, from, cp, fn)
		if !retry {
			return err
		}
		if attempt < s.opts.DeadlockRetries && ctx.Err() == nil {
			s.log.WarnContext(ctx, "mysqlstore: deadlock victim; retrying", "op", op, "attempt", attempt+1, "err", err)
			continue
		}
		return s.writeError(ctx, op, err)
	}
}

// projectOnce runs one attempt of ProjectTx. retry reports a deadlock
// before fn ran; errors other than fn's are already interpreted.
func (s *Store) projectOnce(ctx context.Context, from int64, cp projection.Checkpoint, fn func(ctx context.Context, tx *sql.Tx) error) (retry bool, err error) {
	op := "project " + quote(cp.Name)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, s.writeError(ctx, op, err)
	}
	defer tx.Rollback()
	if err := moveCheckpoint(ctx, tx, from, cp); err != nil {
		if behind, ok := errors.AsType[*projection.CheckpointBehindError](err); ok {
			return false, behind
		}
		if retryable(err) {
			return true, err
		}
		return false, s.writeError(ctx, op, err)
	}
	if fn != nil {
		if err := fn(ctx, tx); err != nil {
			return false, err
		}
	}
	return false, s.writeError(ctx, op, tx.Commit())
}

// moveCheckpoint moves cp.Name from position from to cp.Position inside
// tx, or returns a *projection.CheckpointBehindError.
func moveCheckpoint(ctx context.Context, tx *sql.Tx, from int64, cp projection.Checkpoint) error {
	if from == 0 {
		// A first checkpoint is inserted. Runners racing to insert it
		// queue on the new row; the first commits and the others get a
		// duplicate key, holding a shared lock on the row. They must not
		// lock it further (several shared holders asking for an exclusive
		// lock deadlock), so they look with a plain read: the checkpoint
		// has moved unless it is stored at position 0.
		_, err := tx.ExecContext(ctx, `INSERT INTO projection_checkpoints (name, position, updated_at) VALUES (?, ?, ?)`,
			cp.Name, cp.Position, formatTime(cp.UpdatedAt))
		if err == nil || mysqlErrno(err) != erDupEntry {
			return err
		}
		var at int64
		err = tx.QueryRowContext(ctx, `SELECT position FROM projection_checkpoints WHERE name = ?`, cp.Name).Scan(&at)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return behind(from, cp, 0)
		case err != nil:
			return err
		case at != 0:
			return behind(from, cp, at)
		}
	}
	// The checkpoint exists: lock it (a record lock, released at commit)
	// and move it if it is still where the caller read it.
	var at int64
	err := tx.QueryRowContext(ctx, `SELECT position FROM projection_checkpoints WHERE name = ? FOR UPDATE`, cp.Name).Scan(&at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return behind(from, cp, 0)
	case err != nil:
		return err
	case at != from:
		return behind(from, cp, at)
	}
	_, err = tx.ExecContext(ctx, `UPDATE projection_checkpoints SET position = ?, updated_at = ? WHERE name = ?`,
		cp.Position, formatTime(cp.UpdatedAt), cp.Name)
	return err
}

func behind(from int64, cp projection.Checkpoint, stored int64) error {
	return &projection.CheckpointBehindError{Name: cp.Name, Supersedes: from, Position: cp.Position, Stored: stored}
}

// Wake implements projection.Waker for subscriptions in this process: the
// channel receives a value after appends through this Store commit.
// Appends by other processes are found by polling.
func (s *Store) Wake(ctx context.Context) (<-chan struct{}, error) {
	if s.closed.Load() {
		return nil, flux.ErrStoreClosed
	}
	return s.appended.Subscribe(ctx), nil
}
