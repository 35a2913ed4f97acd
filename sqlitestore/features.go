package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"

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

// writeIdempotency records req's idempotency key inside the append
// transaction, or returns the *flux.IdempotencyError of the first use.
func (s *Store) writeIdempotency(ctx context.Context, tx *sql.Tx, k *flux.IdempotencyRecord) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (idempotency_key, result, created_at) VALUES (?, ?, ?)`,
		k.Key, text(k.Result), formatTime(k.CreatedAt))
	if err == nil {
		return nil
	}
	if !isUniqueViolation(err) {
		return s.appendError(ctx, err)
	}
	first, _, err := lookupIdempotency(ctx, tx, k.Key)
	if err != nil {
		return s.appendError(ctx, err)
	}
	return &flux.IdempotencyError{Record: first}
}

// writeSnapshot stores w inside the append transaction and prunes.
func (s *Store) writeSnapshot(ctx context.Context, tx *sql.Tx, w *flux.SnapshotWrite) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO aggregate_snapshots (aggregate_id, aggregate_type, version, schema_version, data, created_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (aggregate_id, version) DO UPDATE SET aggregate_type = excluded.aggregate_type,
			schema_version = excluded.schema_version, data = excluded.data, created_at = excluded.created_at`,
		w.StreamID, w.AggregateType, w.Version, w.SchemaVersion, text(w.Data), formatTime(w.CreatedAt))
	if err != nil {
		return s.appendError(ctx, err)
	}
	if w.Keep > 0 {
		_, err = tx.ExecContext(ctx, `DELETE FROM aggregate_snapshots WHERE aggregate_id = ? AND version NOT IN
			(SELECT version FROM aggregate_snapshots WHERE aggregate_id = ? ORDER BY version DESC LIMIT ?)`,
			w.StreamID, w.StreamID, w.Keep)
		if err != nil {
			return s.appendError(ctx, err)
		}
	}
	return nil
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
	var data, created string
	err := s.rdb.QueryRowContext(ctx, query, args...).Scan(&sn.AggregateType, &sn.Version, &sn.SchemaVersion, &data, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return flux.Snapshot{}, false, nil
	}
	if err != nil {
		return flux.Snapshot{}, false, s.readError(ctx, err)
	}
	sn.Data = []byte(data)
	if sn.CreatedAt, err = parseTime(created); err != nil {
		return flux.Snapshot{}, false, fmt.Errorf("%w: sqlitestore: snapshot of %q version %d: %v", flux.ErrCorruptEvent, streamID, sn.Version, err)
	}
	return sn, true, nil
}

// ListSnapshots implements flux.SnapshotStore.
func (s *Store) ListSnapshots(ctx context.Context, aggregateType string) iter.Seq2[flux.SnapshotInfo, error] {
	return func(yield func(flux.SnapshotInfo, error) bool) {
		if s.closed.Load() {
			yield(flux.SnapshotInfo{}, flux.ErrStoreClosed)
			return
		}
		query := `SELECT aggregate_id, aggregate_type, version, schema_version, length(CAST(data AS BLOB)), created_at FROM aggregate_snapshots`
		var args []any
		if aggregateType != "" {
			query += ` WHERE aggregate_type = ?`
			args = append(args, aggregateType)
		}
		rows, err := s.rdb.QueryContext(ctx, query+` ORDER BY aggregate_id, version`, args...)
		if err != nil {
			yield(flux.SnapshotInfo{}, s.readError(ctx, err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var info flux.SnapshotInfo
			var created string
			if err := rows.Scan(&info.StreamID, &info.AggregateType, &info.Version, &info.SchemaVersion, &info.Size, &created); err != nil {
				yield(flux.SnapshotInfo{}, s.readError(ctx, err))
				return
			}
			if info.CreatedAt, err = parseTime(created); err != nil {
				yield(flux.SnapshotInfo{}, fmt.Errorf("%w: sqlitestore: snapshot of %q: %v", flux.ErrCorruptEvent, info.StreamID, err))
				return
			}
			if !yield(info, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(flux.SnapshotInfo{}, s.readError(ctx, err))
		}
	}
}

// PruneSnapshots implements flux.SnapshotStore.
func (s *Store) PruneSnapshots(ctx context.Context, keep int) (int64, error) {
	if keep < 1 {
		return 0, fmt.Errorf("%w: sqlitestore: prune snapshots: keep %d, want >= 1", flux.ErrInvalidArgument, keep)
	}
	return s.execCount(ctx, "prune snapshots", `DELETE FROM aggregate_snapshots WHERE id IN (
		SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY aggregate_id ORDER BY version DESC) AS n FROM aggregate_snapshots) WHERE n > ?)`, keep)
}

// DeleteSnapshots implements flux.SnapshotStore.
func (s *Store) DeleteSnapshots(ctx context.Context, streamID string) (int64, error) {
	if streamID == "" {
		return s.execCount(ctx, "delete snapshots", `DELETE FROM aggregate_snapshots`)
	}
	return s.execCount(ctx, "delete snapshots", `DELETE FROM aggregate_snapshots WHERE aggregate_id = ?`, streamID)
}

func (s *Store) execCount(ctx context.Context, what, query string, args ...any) (int64, error) {
	if s.closed.Load() {
		return 0, flux.ErrStoreClosed
	}
	r, err := s.wdb.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, s.writeError(ctx, what, err)
	}
	return r.RowsAffected()
}

func (s *Store) writeError(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return flux.ErrStoreClosed
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("sqlitestore: %s: %w", what, ctxErr)
	}
	return interpretError(fmt.Errorf("sqlitestore: %s: %w", what, err))
}

// LookupIdempotency implements flux.IdempotencyStore.
func (s *Store) LookupIdempotency(ctx context.Context, key string) (flux.IdempotencyRecord, bool, error) {
	if s.closed.Load() {
		return flux.IdempotencyRecord{}, false, flux.ErrStoreClosed
	}
	rec, ok, err := lookupIdempotency(ctx, s.rdb, key)
	if err != nil {
		return rec, false, s.readError(ctx, err)
	}
	return rec, ok, nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func lookupIdempotency(ctx context.Context, q queryer, key string) (flux.IdempotencyRecord, bool, error) {
	rec := flux.IdempotencyRecord{Key: key}
	var created string
	err := q.QueryRowContext(ctx, `SELECT result, created_at FROM idempotency_keys WHERE idempotency_key = ?`, key).Scan(&rec.Result, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return flux.IdempotencyRecord{}, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	if len(rec.Result) == 0 {
		rec.Result = nil // as an empty BLOB read before schema version 3
	}
	if rec.CreatedAt, err = parseTime(created); err != nil {
		return rec, false, fmt.Errorf("%w: sqlitestore: idempotency key %q: %v", flux.ErrCorruptEvent, key, err)
	}
	return rec, true, nil
}

// ListStreams implements flux.Inspector.
func (s *Store) ListStreams(ctx context.Context, opts flux.ListStreamsOptions) iter.Seq2[flux.StreamInfo, error] {
	return func(yield func(flux.StreamInfo, error) bool) {
		if s.closed.Load() {
			yield(flux.StreamInfo{}, flux.ErrStoreClosed)
			return
		}
		query, args := backend.ListStreamsQuery("events", opts, backend.Question)
		rows, err := s.rdb.QueryContext(ctx, query, args...)
		if err != nil {
			yield(flux.StreamInfo{}, s.readError(ctx, err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var si flux.StreamInfo
			var first, last string
			if err := rows.Scan(&si.StreamID, &si.AggregateType, &si.Version, &first, &last); err != nil {
				yield(flux.StreamInfo{}, s.readError(ctx, err))
				return
			}
			var err1, err2 error
			si.FirstEventAt, err1 = parseTime(first)
			si.LastEventAt, err2 = parseTime(last)
			if err := errors.Join(err1, err2); err != nil {
				yield(flux.StreamInfo{}, fmt.Errorf("%w: sqlitestore: stream %q: %v", flux.ErrCorruptEvent, si.StreamID, err))
				return
			}
			if !yield(si, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(flux.StreamInfo{}, s.readError(ctx, err))
		}
	}
}

// Head implements flux.Inspector.
func (s *Store) Head(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, flux.ErrStoreClosed
	}
	var head int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM events`).Scan(&head); err != nil {
		return 0, s.readError(ctx, err)
	}
	return head, nil
}

// LoadKey implements pii.KeyStore.
func (s *Store) LoadKey(ctx context.Context, subject string) (pii.StoredKey, error) {
	if s.closed.Load() {
		return pii.StoredKey{}, flux.ErrStoreClosed
	}
	k, err := loadKey(ctx, s.rdb, subject)
	if err != nil && !errors.Is(err, pii.ErrKeyNotFound) && !errors.Is(err, pii.ErrForgotten) {
		return k, s.readError(ctx, err)
	}
	return k, err
}

func loadKey(ctx context.Context, q queryer, subject string) (pii.StoredKey, error) {
	var wrapped, created, updated, forgotten sql.NullString
	err := q.QueryRowContext(ctx, `SELECT k.encryption_key, k.created_at, k.updated_at, f.forgotten_at
		FROM (SELECT ? AS user_id) AS s
		LEFT JOIN encryption_keys AS k ON k.user_id = s.user_id
		LEFT JOIN forgotten_subjects AS f ON f.user_id = s.user_id`, subject).Scan(&wrapped, &created, &updated, &forgotten)
	switch {
	case err != nil:
		return pii.StoredKey{}, err
	case forgotten.Valid:
		return pii.StoredKey{}, fmt.Errorf("%w: %q", pii.ErrForgotten, subject)
	case !wrapped.Valid:
		return pii.StoredKey{}, fmt.Errorf("%w: %q", pii.ErrKeyNotFound, subject)
	}
	k := pii.StoredKey{Subject: subject, Wrapped: wrapped.String}
	var err1, err2 error
	k.CreatedAt, err1 = parseTime(created.String)
	k.UpdatedAt, err2 = parseTime(updated.String)
	if err := errors.Join(err1, err2); err != nil {
		return pii.StoredKey{}, fmt.Errorf("%w: sqlitestore: key of %q: %v", flux.ErrCorruptEvent, subject, err)
	}
	return k, nil
}

// CreateKey implements pii.KeyStore.
func (s *Store) CreateKey(ctx context.Context, k pii.StoredKey) (pii.StoredKey, error) {
	if s.closed.Load() {
		return pii.StoredKey{}, flux.ErrStoreClosed
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return pii.StoredKey{}, s.writeError(ctx, "create key", err)
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `INSERT INTO encryption_keys (user_id, encryption_key, created_at, updated_at)
		SELECT ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM forgotten_subjects WHERE user_id = ?)
		ON CONFLICT (user_id) DO NOTHING`,
		k.Subject, k.Wrapped, formatTime(k.CreatedAt), formatTime(k.UpdatedAt), k.Subject)
	if err != nil {
		return pii.StoredKey{}, s.writeError(ctx, "create key", err)
	}
	stored, err := loadKey(ctx, tx, k.Subject)
	if err != nil {
		if errors.Is(err, pii.ErrForgotten) || errors.Is(err, pii.ErrKeyNotFound) {
			return pii.StoredKey{}, err
		}
		return pii.StoredKey{}, s.writeError(ctx, "create key", err)
	}
	if err := tx.Commit(); err != nil {
		return pii.StoredKey{}, s.writeError(ctx, "create key", err)
	}
	return stored, nil
}

// ForgetSubject implements pii.KeyStore.
func (s *Store) ForgetSubject(ctx context.Context, f pii.Forgetting) error {
	if s.closed.Load() {
		return flux.ErrStoreClosed
	}
	if err := backend.CheckForgetting(f); err != nil {
		return err
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return s.writeError(ctx, "forget subject", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM encryption_keys WHERE user_id = ?`, f.Subject); err != nil {
		return s.writeError(ctx, "forget subject", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO forgotten_subjects (user_id, forgotten_at, forgotten_by, reason) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id) DO NOTHING`, f.Subject, formatTime(f.At), f.By, f.Reason); err != nil {
		return s.writeError(ctx, "forget subject", err)
	}
	return s.writeError(ctx, "forget subject", tx.Commit())
}

// Forgotten implements pii.KeyStore.
func (s *Store) Forgotten(ctx context.Context, subject string) (pii.Forgetting, bool, error) {
	if s.closed.Load() {
		return pii.Forgetting{}, false, flux.ErrStoreClosed
	}
	f := pii.Forgetting{Subject: subject}
	var at string
	err := s.rdb.QueryRowContext(ctx, `SELECT forgotten_at, forgotten_by, reason FROM forgotten_subjects WHERE user_id = ?`, subject).Scan(&at, &f.By, &f.Reason)
	if errors.Is(err, sql.ErrNoRows) {
		return pii.Forgetting{}, false, nil
	}
	if err != nil {
		return pii.Forgetting{}, false, s.readError(ctx, err)
	}
	if f.At, err = parseTime(at); err != nil {
		return pii.Forgetting{}, false, fmt.Errorf("%w: sqlitestore: forgetting of %q: %v", flux.ErrCorruptEvent, subject, err)
	}
	return f, true, nil
}

// RewrapKeys implements pii.KeyStore.
func (s *Store) RewrapKeys(ctx context.Context, rewrap func(pii.StoredKey) (pii.StoredKey, error)) (int, error) {
	if s.closed.Load() {
		return 0, flux.ErrStoreClosed
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return 0, s.writeError(ctx, "rewrap keys", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT user_id, encryption_key, created_at, updated_at FROM encryption_keys ORDER BY user_id`)
	if err != nil {
		return 0, s.writeError(ctx, "rewrap keys", err)
	}
	var keys []pii.StoredKey
	for rows.Next() {
		var k pii.StoredKey
		var created, updated string
		if err := rows.Scan(&k.Subject, &k.Wrapped, &created, &updated); err != nil {
			rows.Close()
			return 0, s.writeError(ctx, "rewrap keys", err)
		}
		k.CreatedAt, _ = parseTime(created)
		k.UpdatedAt, _ = parseTime(updated)
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, s.writeError(ctx, "rewrap keys", err)
	}
	for _, k := range keys {
		nk, err := rewrap(k)
		if err != nil {
			return 0, fmt.Errorf("sqlitestore: rewrap key of %q: %w", k.Subject, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE encryption_keys SET encryption_key = ?, updated_at = ? WHERE user_id = ?`,
			nk.Wrapped, formatTime(nk.UpdatedAt), k.Subject); err != nil {
			return 0, s.writeError(ctx, "rewrap keys", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, s.writeError(ctx, "rewrap keys", err)
	}
	return len(keys), nil
}

// LoadCheckpoint implements projection.CheckpointStore.
func (s *Store) LoadCheckpoint(ctx context.Context, name string) (projection.Checkpoint, error) {
	if s.closed.Load() {
		return projection.Checkpoint{}, flux.ErrStoreClosed
	}
	cp := projection.Checkpoint{Name: name}
	var updated string
	err := s.rdb.QueryRowContext(ctx, `SELECT position, updated_at FROM projection_checkpoints WHERE name = ?`, name).Scan(&cp.Position, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return cp, nil
	}
	if err != nil {
		return cp, s.readError(ctx, err)
	}
	cp.UpdatedAt, err = parseTime(updated)
	return cp, err
}

// SaveCheckpoint implements projection.CheckpointStore: one conditional
// statement moves the checkpoint only from cp.Supersedes.
func (s *Store) SaveCheckpoint(ctx context.Context, cp projection.Checkpoint) error {
	if s.closed.Load() {
		return flux.ErrStoreClosed
	}
	var err error
	if cp.Supersedes == projection.AnyPosition {
		_, err = s.wdb.ExecContext(ctx, upsertCheckpoint, cp.Name, cp.Position, formatTime(cp.UpdatedAt))
	} else {
		err = moveCheckpoint(ctx, s.wdb, cp.Supersedes, cp)
	}
	return s.checkpointError(ctx, "save checkpoint "+cp.Name, err)
}

const upsertCheckpoint = `INSERT INTO projection_checkpoints (name, position, updated_at) VALUES (?, ?, ?)
	ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at`

// ListCheckpoints implements projection.CheckpointStore.
func (s *Store) ListCheckpoints(ctx context.Context) ([]projection.Checkpoint, error) {
	if s.closed.Load() {
		return nil, flux.ErrStoreClosed
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT name, position, updated_at FROM projection_checkpoints ORDER BY name`)
	if err != nil {
		return nil, s.readError(ctx, err)
	}
	defer rows.Close()
	var out []projection.Checkpoint
	for rows.Next() {
		var cp projection.Checkpoint
		var updated string
		if err := rows.Scan(&cp.Name, &cp.Position, &updated); err != nil {
			return nil, s.readError(ctx, err)
		}
		if cp.UpdatedAt, err = parseTime(updated); err != nil {
			return nil, err
		}
		out = append(out, cp)
	}
	return out, s.readError(ctx, rows.Err())
}

// DeleteCheckpoint implements projection.CheckpointStore.
func (s *Store) DeleteCheckpoint(ctx context.Context, name string) error {
	_, err := s.execCount(ctx, "delete checkpoint", `DELETE FROM projection_checkpoints WHERE name = ?`, name)
	return err
}
