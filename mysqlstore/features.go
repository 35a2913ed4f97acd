package mysqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/backend"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

var (
	_ flux.SnapshotStore         = (*Store)(nil)
	_ flux.IdempotencyStore      = (*Store)(nil)
	_ flux.Inspector             = (*Store)(nil)
	_ pii.KeyStore               = (*Store)(nil)
	_ projection.CheckpointStore = (*Store)(nil)
)

// writeIdempotency records k inside the append transaction, or returns the
// *flux.IdempotencyError carrying the first use. Appends are serialised
// on the log head, so a first use has committed before a duplicate runs.
func (s *Store) writeIdempotency(ctx context.Context, tx querier, k *flux.IdempotencyRecord) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (idempotency_key, result, created_at) VALUES (?, ?, ?)`,
		k.Key, nonNil(k.Result), formatTime(k.CreatedAt))
	if err == nil || mysqlErrno(err) != erDupEntry {
		return err
	}
	first, ok, err := lookupIdempotency(ctx, tx, k.Key)
	if err != nil {
		return err
	}
	if !ok { // the first use was deleted meanwhile: report without its outcome
		first = flux.IdempotencyRecord{Key: k.Key}
	}
	return &flux.IdempotencyError{Record: first}
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// writeSnapshot stores w inside the append transaction and prunes the
// stream's older snapshots beyond w.Keep.
func writeSnapshot(ctx context.Context, tx querier, w *flux.SnapshotWrite) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO aggregate_snapshots (aggregate_id, aggregate_type, version, schema_version, data, created_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON DUPLICATE KEY UPDATE aggregate_type = VALUES(aggregate_type), schema_version = VALUES(schema_version),
			data = VALUES(data), created_at = VALUES(created_at)`,
		w.StreamID, w.AggregateType, w.Version, w.SchemaVersion, json.RawMessage(w.Data), formatTime(w.CreatedAt))
	if err != nil {
		return err
	}
	if w.Keep > 0 {
		// The cutoff is the version of the Keep-th newest snapshot; the
		// doubly nested derived table is materialised, which MySQL
		// requires to read the table a DELETE writes.
		_, err = tx.ExecContext(ctx, `DELETE FROM aggregate_snapshots WHERE aggregate_id = ? AND version <
			(SELECT cutoff.version FROM (SELECT version FROM aggregate_snapshots WHERE aggregate_id = ?
				ORDER BY version DESC LIMIT 1 OFFSET ?) AS cutoff)`,
			w.StreamID, w.StreamID, w.Keep-1)
	}
	return err
}

// LoadSnapshot implements flux.SnapshotStore.
func (s *Store) LoadSnapshot(ctx context.Context, streamID string, q flux.SnapshotQuery) (flux.Snapshot, bool, error) {
	if s.closed.Load() {
		return flux.Snapshot{}, false, flux.ErrStoreClosed
	}
	query := `SELECT aggregate_type, version, schema_version, data, created_at FROM aggregate_snapshots
		WHERE aggregate_id = ? AND schema_version = ?`
	args := []any{streamID, q.SchemaVersion}
	if q.MaxVersion > 0 {
		query += ` AND version <= ?`
		args = append(args, q.MaxVersion)
	}
	if !q.Until.IsZero() {
		query += ` AND created_at <= ?`
		args = append(args, formatTime(q.Until))
	}
	query += ` ORDER BY version DESC LIMIT 1`
	sn := flux.Snapshot{StreamID: streamID}
	err := s.db.QueryRowContext(ctx, query, args...).Scan(&sn.AggregateType, &sn.Version, &sn.SchemaVersion, &sn.Data, utcTime{&sn.CreatedAt})
	if errors.Is(err, sql.ErrNoRows) {
		return flux.Snapshot{}, false, nil
	}
	if err != nil {
		return flux.Snapshot{}, false, s.readError(ctx, "load snapshot of "+quote(streamID), err)
	}
	return sn, true, nil
}

// ListSnapshots implements flux.SnapshotStore. Size is the stored JSON's
// length in bytes.
func (s *Store) ListSnapshots(ctx context.Context, aggregateType string) iter.Seq2[flux.SnapshotInfo, error] {
	return func(yield func(flux.SnapshotInfo, error) bool) {
		if s.closed.Load() {
			yield(flux.SnapshotInfo{}, flux.ErrStoreClosed)
			return
		}
		query := `SELECT aggregate_id, aggregate_type, version, schema_version, LENGTH(data), created_at FROM aggregate_snapshots`
		var args []any
		if aggregateType != "" {
			query += ` WHERE aggregate_type = ?`
			args = append(args, aggregateType)
		}
		rows, err := s.db.QueryContext(ctx, query+` ORDER BY aggregate_id, version`, args...)
		if err != nil {
			yield(flux.SnapshotInfo{}, s.readError(ctx, "list snapshots", err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var info flux.SnapshotInfo
			if err := rows.Scan(&info.StreamID, &info.AggregateType, &info.Version, &info.SchemaVersion, &info.Size, utcTime{&info.CreatedAt}); err != nil {
				yield(flux.SnapshotInfo{}, s.readError(ctx, "list snapshots", err))
				return
			}
			if !yield(info, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(flux.SnapshotInfo{}, s.readError(ctx, "list snapshots", err))
		}
	}
}

// PruneSnapshots implements flux.SnapshotStore.
func (s *Store) PruneSnapshots(ctx context.Context, keep int) (int64, error) {
	if keep < 1 {
		return 0, fmt.Errorf("%w: mysqlstore: prune snapshots: keep %d, want >= 1", flux.ErrInvalidArgument, keep)
	}
	return s.execCount(ctx, "prune snapshots", `DELETE s FROM aggregate_snapshots AS s JOIN (
		SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY aggregate_id ORDER BY version DESC) AS n FROM aggregate_snapshots) AS ranked
		WHERE n > ?) AS doomed ON doomed.id = s.id`, keep)
}

// DeleteSnapshots implements flux.SnapshotStore.
func (s *Store) DeleteSnapshots(ctx context.Context, streamID string) (int64, error) {
	if streamID == "" {
		return s.execCount(ctx, "delete snapshots", `DELETE FROM aggregate_snapshots`)
	}
	return s.execCount(ctx, "delete snapshots of "+quote(streamID), `DELETE FROM aggregate_snapshots WHERE aggregate_id = ?`, streamID)
}

// execCount runs one statement on its own (autocommit) and returns the
// rows it affected, running it again if InnoDB picks it as a deadlock
// victim (a prune may meet an append writing snapshots).
func (s *Store) execCount(ctx context.Context, op, query string, args ...any) (int64, error) {
	if s.closed.Load() {
		return 0, flux.ErrStoreClosed
	}
	for attempt := 0; ; attempt++ {
		r, err := s.db.ExecContext(ctx, query, args...)
		if err != nil && retryable(err) && attempt < s.opts.DeadlockRetries && ctx.Err() == nil {
			s.log.WarnContext(ctx, "mysqlstore: deadlock victim; retrying", "op", op, "attempt", attempt+1, "err", err)
			continue
		}
		if err != nil {
			return 0, s.writeError(ctx, op, err)
		}
		return r.RowsAffected()
	}
}

// LookupIdempotency implements flux.IdempotencyStore.
func (s *Store) LookupIdempotency(ctx context.Context, key string) (flux.IdempotencyRecord, bool, error) {
	if s.closed.Load() {
		return flux.IdempotencyRecord{}, false, flux.ErrStoreClosed
	}
	rec, ok, err := lookupIdempotency(ctx, s.db, key)
	if err != nil {
		return rec, false, s.readError(ctx, "look up idempotency key "+quote(key), err)
	}
	return rec, ok, nil
}

func lookupIdempotency(ctx context.Context, q querier, key string) (flux.IdempotencyRecord, bool, error) {
	rec := flux.IdempotencyRecord{Key: key}
	err := q.QueryRowContext(ctx, `SELECT result, created_at FROM idempotency_keys WHERE idempotency_key = ?`, key).Scan(&rec.Result, utcTime{&rec.CreatedAt})
	if errors.Is(err, sql.ErrNoRows) {
		return flux.IdempotencyRecord{}, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	return rec, true, nil
}

// ListStreams implements flux.Inspector. Stream IDs are ordered by their
// bytes (the columns' binary collation), like Go strings.
func (s *Store) ListStreams(ctx context.Context, opts flux.ListStreamsOptions) iter.Seq2[flux.StreamInfo, error] {
	return func(yield func(flux.StreamInfo, error) bool) {
		if s.closed.Load() {
			yield(flux.StreamInfo{}, flux.ErrStoreClosed)
			return
		}
		query, args := backend.ListStreamsQuery("events", opts, backend.Question)
		rows, err := s.db.QueryContext(ctx, query, args...)
		if err != nil {
			yield(flux.StreamInfo{}, s.readError(ctx, "list streams", err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var si flux.StreamInfo
			if err := rows.Scan(&si.StreamID, &si.AggregateType, &si.Version, utcTime{&si.FirstEventAt}, utcTime{&si.LastEventAt}); err != nil {
				yield(flux.StreamInfo{}, s.readError(ctx, "list streams", err))
				return
			}
			if !yield(si, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(flux.StreamInfo{}, s.readError(ctx, "list streams", err))
		}
	}
}

// Head implements flux.Inspector: the last position handed out by a
// committed append.
func (s *Store) Head(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, flux.ErrStoreClosed
	}
	var head int64
	if err := s.db.QueryRowContext(ctx, `SELECT position FROM flux_log_head WHERE id = 1`).Scan(&head); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, errors.New("mysqlstore: head: the log head row is missing from flux_log_head; run Store.Migrate")
		}
		return 0, s.readError(ctx, "head", err)
	}
	return head, nil
}

// LoadKey implements pii.KeyStore.
func (s *Store) LoadKey(ctx context.Context, subject string) (pii.StoredKey, error) {
	if s.closed.Load() {
		return pii.StoredKey{}, flux.ErrStoreClosed
	}
	k, err := loadKey(ctx, s.db, subject)
	if err != nil && !errors.Is(err, pii.ErrKeyNotFound) && !errors.Is(err, pii.ErrForgotten) {
		return k, s.readError(ctx, "load key of "+quote(subject), err)
	}
	return k, err
}

// loadKey reads the subject's key and tombstone in one query; the
// tombstone wins.
func loadKey(ctx context.Context, q querier, subject string) (pii.StoredKey, error) {
	rows, err := q.QueryContext(ctx, `SELECT 0, encryption_key, created_at, updated_at FROM encryption_keys WHERE user_id = ?
		UNION ALL SELECT 1, NULL, forgotten_at, forgotten_at FROM forgotten_subjects WHERE user_id = ?`, subject, subject)
	if err != nil {
		return pii.StoredKey{}, err
	}
	defer rows.Close()
	var k pii.StoredKey
	found, forgotten := false, false
	for rows.Next() {
		var tomb int
		var wrapped sql.NullString
		var created, updated time.Time
		if err := rows.Scan(&tomb, &wrapped, utcTime{&created}, utcTime{&updated}); err != nil {
			return pii.StoredKey{}, err
		}
		if tomb == 1 {
			forgotten = true
			continue
		}
		found = true
		k = pii.StoredKey{Subject: subject, Wrapped: wrapped.String, CreatedAt: created, UpdatedAt: updated}
	}
	if err := rows.Err(); err != nil {
		return pii.StoredKey{}, err
	}
	switch {
	case forgotten:
		return pii.StoredKey{}, fmt.Errorf("%w: %q", pii.ErrForgotten, subject)
	case !found:
		return pii.StoredKey{}, fmt.Errorf("%w: %q", pii.ErrKeyNotFound, subject)
	}
	return k, nil
}

// CreateKey implements pii.KeyStore. Concurrent first uses meet on the
// unique user_id: one insert wins, the others read its key.
//
// CreateKey and ForgetSubject run at REPEATABLE READ whatever the pool's
// default, so the tombstone check below takes a gap lock: a ForgetSubject
// running at the same time either commits first (its tombstone is seen
// and no key is created) or waits until this key is committed (and then
// deletes it). A subject can never end up forgotten with a key.
func (s *Store) CreateKey(ctx context.Context, k pii.StoredKey) (pii.StoredKey, error) {
	if s.closed.Load() {
		return pii.StoredKey{}, flux.ErrStoreClosed
	}
	if err := checkName("subject", k.Subject); err != nil {
		return pii.StoredKey{}, err
	}
	op := "create key of " + quote(k.Subject)
	// Fast path: the key (or the tombstone) is usually there already.
	if stored, err := loadKey(ctx, s.db, k.Subject); err == nil || errors.Is(err, pii.ErrForgotten) {
		return stored, err
	} else if !errors.Is(err, pii.ErrKeyNotFound) {
		return pii.StoredKey{}, s.readError(ctx, op, err)
	}
	var stored pii.StoredKey
	var keyErr error
	err := s.inTx(ctx, op, &sql.TxOptions{Isolation: sql.LevelRepeatableRead}, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO encryption_keys (user_id, encryption_key, created_at, updated_at)
			SELECT ?, ?, ?, ? FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM forgotten_subjects WHERE user_id = ?)`,
			k.Subject, k.Wrapped, formatTime(k.CreatedAt), formatTime(k.UpdatedAt), k.Subject)
		if err != nil && mysqlErrno(err) != erDupEntry {
			return err
		}
		stored, keyErr = loadKey(ctx, tx, k.Subject)
		if keyErr != nil && !errors.Is(keyErr, pii.ErrForgotten) && !errors.Is(keyErr, pii.ErrKeyNotFound) {
			return keyErr
		}
		return tx.Commit()
	})
	if err != nil {
		return pii.StoredKey{}, err
	}
	return stored, keyErr
}

// inTx runs fn in a transaction, running it again when InnoDB picked the
// transaction as a deadlock victim (Options.DeadlockRetries). fn commits.
func (s *Store) inTx(ctx context.Context, op string, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := func() error {
			tx, err := s.db.BeginTx(ctx, opts)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			return fn(tx)
		}()
		if err != nil && retryable(err) && attempt < s.opts.DeadlockRetries && ctx.Err() == nil {
			s.log.WarnContext(ctx, "mysqlstore: deadlock victim; retrying", "op", op, "attempt", attempt+1, "err", err)
			continue
		}
		return s.writeError(ctx, op, err)
	}
}

// ForgetSubject implements pii.KeyStore: it records the tombstone, then
// deletes the key, in one transaction (see CreateKey for the locking).
func (s *Store) ForgetSubject(ctx context.Context, f pii.Forgetting) error {
	if s.closed.Load() {
		return flux.ErrStoreClosed
	}
	if err := backend.CheckForgetting(f); err != nil {
		return err
	}
	if err := checkName("subject", f.Subject); err != nil {
		return err
	}
	return s.inTx(ctx, "forget subject "+quote(f.Subject), &sql.TxOptions{Isolation: sql.LevelRepeatableRead}, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO forgotten_subjects (user_id, forgotten_at, forgotten_by, reason) VALUES (?, ?, ?, ?)`,
			f.Subject, formatTime(f.At), f.By, f.Reason)
		if err != nil && mysqlErrno(err) != erDupEntry { // forgetting twice keeps the first record
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM encryption_keys WHERE user_id = ?`, f.Subject); err != nil {
			return err
		}
		return tx.Commit()
	})
}

// Forgotten implements pii.KeyStore.
func (s *Store) Forgotten(ctx context.Context, subject string) (pii.Forgetting, bool, error) {
	if s.closed.Load() {
		return pii.Forgetting{}, false, flux.ErrStoreClosed
	}
	f := pii.Forgetting{Subject: subject}
	err := s.db.QueryRowContext(ctx, `SELECT forgotten_at, forgotten_by, reason FROM forgotten_subjects WHERE user_id = ?`, subject).
		Scan(utcTime{&f.At}, &f.By, &f.Reason)
	if errors.Is(err, sql.ErrNoRows) {
		return pii.Forgetting{}, false, nil
	}
	if err != nil {
		return pii.Forgetting{}, false, s.readError(ctx, "forgotten "+quote(subject), err)
	}
	return f, true, nil
}

// RewrapKeys implements pii.KeyStore. The keys are locked (SELECT ... FOR
// UPDATE) while rewrap runs, so no key changes under it; rewrap may run
// again if InnoDB rolls the transaction back as a deadlock victim.
func (s *Store) RewrapKeys(ctx context.Context, rewrap func(pii.StoredKey) (pii.StoredKey, error)) (int, error) {
	if s.closed.Load() {
		return 0, flux.ErrStoreClosed
	}
	var n int
	var rewrapErr error
	err := s.inTx(ctx, "rewrap keys", nil, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT user_id, encryption_key, created_at, updated_at FROM encryption_keys ORDER BY user_id FOR UPDATE`)
		if err != nil {
			return err
		}
		var keys []pii.StoredKey
		for rows.Next() {
			var k pii.StoredKey
			if err := rows.Scan(&k.Subject, &k.Wrapped, utcTime{&k.CreatedAt}, utcTime{&k.UpdatedAt}); err != nil {
				rows.Close()
				return err
			}
			keys = append(keys, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, k := range keys {
			nk, err := rewrap(k)
			if err != nil {
				rewrapErr = fmt.Errorf("mysqlstore: rewrap key of %q: %w", k.Subject, err)
				return nil // roll back
			}
			if _, err := tx.ExecContext(ctx, `UPDATE encryption_keys SET encryption_key = ?, updated_at = ? WHERE user_id = ?`,
				nk.Wrapped, formatTime(nk.UpdatedAt), k.Subject); err != nil {
				return err
			}
		}
		n = len(keys)
		return tx.Commit()
	})
	if rewrapErr != nil {
		return 0, rewrapErr
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// LoadCheckpoint implements projection.CheckpointStore.
func (s *Store) LoadCheckpoint(ctx context.Context, name string) (projection.Checkpoint, error) {
	if s.closed.Load() {
		return projection.Checkpoint{}, flux.ErrStoreClosed
	}
	cp := projection.Checkpoint{Name: name}
	err := s.db.QueryRowContext(ctx, `SELECT position, updated_at FROM projection_checkpoints WHERE name = ?`, name).Scan(&cp.Position, utcTime{&cp.UpdatedAt})
	if errors.Is(err, sql.ErrNoRows) {
		return cp, nil
	}
	if err != nil {
		return cp, s.readError(ctx, "load checkpoint "+quote(name), err)
	}
	return cp, nil
}

// SaveCheckpoint implements projection.CheckpointStore: the checkpoint
// row is locked and moved only if it is at cp.Supersedes, in a
// transaction (as ProjectTx, without a read-model write).
func (s *Store) SaveCheckpoint(ctx context.Context, cp projection.Checkpoint) error {
	if s.closed.Load() {
		return flux.ErrStoreClosed
	}
	if err := checkName("checkpoint name", cp.Name); err != nil {
		return err
	}
	if cp.Supersedes != projection.AnyPosition {
		return s.ProjectTx(ctx, cp.Supersedes, cp, nil)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO projection_checkpoints (name, position, updated_at) VALUES (?, ?, ?)
		ON DUPLICATE KEY UPDATE position = VALUES(position), updated_at = VALUES(updated_at)`, cp.Name, cp.Position, formatTime(cp.UpdatedAt))
	return s.writeError(ctx, "save checkpoint "+quote(cp.Name), err)
}

// ListCheckpoints implements projection.CheckpointStore.
func (s *Store) ListCheckpoints(ctx context.Context) ([]projection.Checkpoint, error) {
	if s.closed.Load() {
		return nil, flux.ErrStoreClosed
	}
	rows, err := s.db.QueryContext(ctx, `SELECT name, position, updated_at FROM projection_checkpoints ORDER BY name`)
	if err != nil {
		return nil, s.readError(ctx, "list checkpoints", err)
	}
	defer rows.Close()
	var out []projection.Checkpoint
	for rows.Next() {
		var cp projection.Checkpoint
		if err := rows.Scan(&cp.Name, &cp.Position, utcTime{&cp.UpdatedAt}); err != nil {
			return nil, s.readError(ctx, "list checkpoints", err)
		}
		out = append(out, cp)
	}
	return out, s.readError(ctx, "list checkpoints", rows.Err())
}

// DeleteCheckpoint implements projection.CheckpointStore.
func (s *Store) DeleteCheckpoint(ctx context.Context, name string) error {
	_, err := s.execCount(ctx, "delete checkpoint "+quote(name), `DELETE FROM projection_checkpoints WHERE name = ?`, name)
	return err
}
