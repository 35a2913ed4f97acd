package pgstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/backend"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

var (
	_ flux.SnapshotStore         = (*Store)(nil)
	_ flux.IdempotencyStore      = (*Store)(nil)
	_ flux.Inspector             = (*Store)(nil)
	_ pii.KeyStore               = (*Store)(nil)
	_ projection.CheckpointStore = (*Store)(nil)
)

// LoadSnapshot implements flux.SnapshotStore.
func (s *Store) LoadSnapshot(ctx context.Context, streamID string, q flux.SnapshotQuery) (flux.Snapshot, bool, error) {
	if s.closed.Load() {
		return flux.Snapshot{}, false, flux.ErrStoreClosed
	}
	var b strings.Builder
	var p paramList
	b.WriteString(`SELECT aggregate_type, version, schema_version, data, data_json, created_at FROM ` + s.q.table("aggregate_snapshots"))
	b.WriteString(` WHERE aggregate_id = ` + p.add(streamID) + ` AND schema_version = ` + p.add(q.SchemaVersion))
	if q.MaxVersion > 0 {
		b.WriteString(` AND version <= ` + p.add(q.MaxVersion))
	}
	if !q.Until.IsZero() {
		b.WriteString(` AND created_at <= ` + p.add(flux.NormalizeTime(q.Until)))
	}
	b.WriteString(` ORDER BY version DESC LIMIT 1`)
	sn := flux.Snapshot{StreamID: streamID}
	var data, exact []byte
	err := s.reader().QueryRow(ctx, b.String(), p.args...).Scan(&sn.AggregateType, &sn.Version, &sn.SchemaVersion, &data, &exact, &sn.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return flux.Snapshot{}, false, nil
	}
	if err != nil {
		return flux.Snapshot{}, false, s.fail(ctx, fmt.Sprintf("load snapshot of %q", streamID), err, "")
	}
	sn.Data = data
	if exact != nil {
		sn.Data = exact
	}
	sn.CreatedAt = sn.CreatedAt.UTC()
	return sn, true, nil
}

// ListSnapshots implements flux.SnapshotStore. Size is the length of the
// data as stored (jsonb's normalised text).
func (s *Store) ListSnapshots(ctx context.Context, aggregateType string) iter.Seq2[flux.SnapshotInfo, error] {
	return func(yield func(flux.SnapshotInfo, error) bool) {
		if s.closed.Load() {
			yield(flux.SnapshotInfo{}, flux.ErrStoreClosed)
			return
		}
		query := `SELECT aggregate_id, aggregate_type, version, schema_version, octet_length(COALESCE(data_json::text, data::text)), created_at FROM ` + s.q.table("aggregate_snapshots")
		var args []any
		if aggregateType != "" {
			query += ` WHERE aggregate_type = $1`
			args = append(args, aggregateType)
		}
		rows, err := s.query(ctx, query+` ORDER BY aggregate_id, version`, args...)
		if err != nil {
			yield(flux.SnapshotInfo{}, s.fail(ctx, "list snapshots", err, ""))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var info flux.SnapshotInfo
			if err := rows.Scan(&info.StreamID, &info.AggregateType, &info.Version, &info.SchemaVersion, &info.Size, &info.CreatedAt); err != nil {
				yield(flux.SnapshotInfo{}, s.fail(ctx, "list snapshots", err, ""))
				return
			}
			info.CreatedAt = info.CreatedAt.UTC()
			if !yield(info, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(flux.SnapshotInfo{}, s.fail(ctx, "list snapshots", err, ""))
		}
	}
}

// PruneSnapshots implements flux.SnapshotStore.
func (s *Store) PruneSnapshots(ctx context.Context, keep int) (int64, error) {
	if keep < 1 {
		return 0, fmt.Errorf("%w: pgstore: prune snapshots: keep %d, want >= 1", flux.ErrInvalidArgument, keep)
	}
	table := s.q.table("aggregate_snapshots")
	return s.execCount(ctx, "prune snapshots", `DELETE FROM `+table+` WHERE id IN (
		SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY aggregate_id ORDER BY version DESC) AS n FROM `+table+`) AS ranked
		WHERE n > $1)`, keep)
}

// DeleteSnapshots implements flux.SnapshotStore.
func (s *Store) DeleteSnapshots(ctx context.Context, streamID string) (int64, error) {
	if streamID == "" {
		return s.execCount(ctx, "delete snapshots", `DELETE FROM `+s.q.table("aggregate_snapshots"))
	}
	return s.execCount(ctx, "delete snapshots", `DELETE FROM `+s.q.table("aggregate_snapshots")+` WHERE aggregate_id = $1`, streamID)
}

func (s *Store) execCount(ctx context.Context, op, query string, args ...any) (int64, error) {
	if s.closed.Load() {
		return 0, flux.ErrStoreClosed
	}
	var n int64
	err := s.readCommitted(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, query, args...)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, s.fail(ctx, op, err, writeOutcome(err))
	}
	return n, nil
}

// readCommitted runs fn in a transaction at READ COMMITTED: a statement
// run on its own would take the session's default isolation, and at
// repeatable read or serializable (default_transaction_isolation, a
// common hardening) concurrent writes of one row fail with 40001 instead
// of waiting for each other.
func (s *Store) readCommitted(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return tx.Commit(ctx)
}

// writeOutcome says what became of a single-statement write (autocommit)
// that failed with err: nothing, unless the connection broke (possibly
// after the statement was sent; see commitRolledBack on why
// pgconn.SafeToRetry cannot tell), when it may have run and committed.
func writeOutcome(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !fatal(pgErr) || !lostConnection(err) {
		return nothingCommitted
	}
	return outcomeUnknown
}

// LookupIdempotency implements flux.IdempotencyStore.
func (s *Store) LookupIdempotency(ctx context.Context, key string) (flux.IdempotencyRecord, bool, error) {
	if s.closed.Load() {
		return flux.IdempotencyRecord{}, false, flux.ErrStoreClosed
	}
	rec, ok, err := lookupIdempotency(ctx, s.reader(), s.q, key)
	if err != nil {
		return rec, false, s.fail(ctx, fmt.Sprintf("look up idempotency key %q", key), err, "")
	}
	return rec, ok, nil
}

func lookupIdempotency(ctx context.Context, q rowQuerier, qs queries, key string) (flux.IdempotencyRecord, bool, error) {
	rec := flux.IdempotencyRecord{Key: key}
	err := q.QueryRow(ctx, `SELECT result, created_at FROM `+qs.table("idempotency_keys")+` WHERE idempotency_key = $1`, key).Scan(&rec.Result, &rec.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return flux.IdempotencyRecord{}, false, nil
	}
	if err != nil {
		return flux.IdempotencyRecord{}, false, err
	}
	rec.CreatedAt = rec.CreatedAt.UTC()
	return rec, true, nil
}

// ListStreams implements flux.Inspector.
func (s *Store) ListStreams(ctx context.Context, opts flux.ListStreamsOptions) iter.Seq2[flux.StreamInfo, error] {
	return func(yield func(flux.StreamInfo, error) bool) {
		if s.closed.Load() {
			yield(flux.StreamInfo{}, flux.ErrStoreClosed)
			return
		}
		query, args := backend.ListStreamsQuery(s.q.table("events"), opts, backend.Dollar)
		rows, err := s.query(ctx, query, args...)
		if err != nil {
			yield(flux.StreamInfo{}, s.fail(ctx, "list streams", err, ""))
			return
		}
		defer rows.Close()
		for rows.Next() {
			var si flux.StreamInfo
			if err := rows.Scan(&si.StreamID, &si.AggregateType, &si.Version, &si.FirstEventAt, &si.LastEventAt); err != nil {
				yield(flux.StreamInfo{}, s.fail(ctx, "list streams", err, ""))
				return
			}
			si.FirstEventAt, si.LastEventAt = si.FirstEventAt.UTC(), si.LastEventAt.UTC()
			if !yield(si, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(flux.StreamInfo{}, s.fail(ctx, "list streams", err, ""))
		}
	}
}

// Head implements flux.Inspector: the log head's committed position, which
// is the highest position of a committed event (positions are dense).
func (s *Store) Head(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, flux.ErrStoreClosed
	}
	var head int64
	if err := s.reader().QueryRow(ctx, s.q.head).Scan(&head); err != nil {
		return 0, s.fail(ctx, "read head", err, "")
	}
	return head, nil
}

// LoadKey implements pii.KeyStore.
func (s *Store) LoadKey(ctx context.Context, subject string) (pii.StoredKey, error) {
	if s.closed.Load() {
		return pii.StoredKey{}, flux.ErrStoreClosed
	}
	k, err := s.loadKey(ctx, s.reader(), subject)
	if err != nil && !errors.Is(err, pii.ErrKeyNotFound) && !errors.Is(err, pii.ErrForgotten) {
		return k, s.fail(ctx, fmt.Sprintf("load key of %q", subject), err, "")
	}
	return k, err
}

func (s *Store) loadKey(ctx context.Context, q rowQuerier, subject string) (pii.StoredKey, error) {
	var wrapped *string
	var created, updated *time.Time
	var forgotten bool
	err := q.QueryRow(ctx, `SELECT k.encryption_key, k.created_at, k.updated_at, f.user_id IS NOT NULL
		FROM (SELECT $1::text AS user_id) AS s
		LEFT JOIN `+s.q.table("encryption_keys")+` AS k ON k.user_id = s.user_id
		LEFT JOIN `+s.q.table("forgotten_subjects")+` AS f ON f.user_id = s.user_id`, subject).Scan(&wrapped, &created, &updated, &forgotten)
	switch {
	case err != nil:
		return pii.StoredKey{}, err
	case forgotten:
		return pii.StoredKey{}, fmt.Errorf("%w: %q", pii.ErrForgotten, subject)
	case wrapped == nil || created == nil || updated == nil:
		return pii.StoredKey{}, fmt.Errorf("%w: %q", pii.ErrKeyNotFound, subject)
	}
	return pii.StoredKey{Subject: subject, Wrapped: *wrapped, CreatedAt: created.UTC(), UpdatedAt: updated.UTC()}, nil
}

// lockSubject takes the transaction-scoped advisory lock of one subject,
// which CreateKey and ForgetSubject hold: without it a key created while
// the subject is being forgotten could survive beside its tombstone.
func (s *Store) lockSubject(ctx context.Context, tx pgx.Tx, subject string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, lockClassKeys, s.opts.Schema+"\x1f"+subject)
	return err
}

// CreateKey implements pii.KeyStore. Concurrent first uses of one subject
// serialise on a per-subject advisory lock; the first key stored wins.
func (s *Store) CreateKey(ctx context.Context, k pii.StoredKey) (pii.StoredKey, error) {
	if s.closed.Load() {
		return pii.StoredKey{}, flux.ErrStoreClosed
	}
	op := fmt.Sprintf("create key of %q", k.Subject)
	if strings.IndexByte(k.Subject, 0) >= 0 || strings.IndexByte(k.Wrapped, 0) >= 0 {
		return pii.StoredKey{}, fmt.Errorf("pgstore: %s: the subject or the wrapped key contains a NUL character, which PostgreSQL cannot store", op)
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return pii.StoredKey{}, s.fail(ctx, op, err, nothingCommitted)
	}
	defer rollback(ctx, tx)
	if err := s.lockSubject(ctx, tx, k.Subject); err != nil {
		return pii.StoredKey{}, s.fail(ctx, op, err, nothingCommitted)
	}
	_, err = tx.Exec(ctx, `INSERT INTO `+s.q.table("encryption_keys")+` (user_id, encryption_key, created_at, updated_at)
		SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM `+s.q.table("forgotten_subjects")+` WHERE user_id = $1)
		ON CONFLICT (user_id) DO NOTHING`,
		k.Subject, k.Wrapped, flux.NormalizeTime(k.CreatedAt), flux.NormalizeTime(k.UpdatedAt))
	if err != nil {
		return pii.StoredKey{}, s.fail(ctx, op, err, nothingCommitted)
	}
	stored, err := s.loadKey(ctx, tx, k.Subject)
	if err != nil {
		if errors.Is(err, pii.ErrForgotten) || errors.Is(err, pii.ErrKeyNotFound) {
			return pii.StoredKey{}, err
		}
		return pii.StoredKey{}, s.fail(ctx, op, err, nothingCommitted)
	}
	if err := tx.Commit(ctx); err != nil {
		return pii.StoredKey{}, s.commitFailed(ctx, op, err, outcomeUnknown)
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
	op := fmt.Sprintf("forget subject %q", f.Subject)
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(ctx, op, err, nothingCommitted)
	}
	defer rollback(ctx, tx)
	if err := s.lockSubject(ctx, tx, f.Subject); err != nil {
		return s.fail(ctx, op, err, nothingCommitted)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+s.q.table("encryption_keys")+` WHERE user_id = $1`, f.Subject); err != nil {
		return s.fail(ctx, op, err, nothingCommitted)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+s.q.table("forgotten_subjects")+` (user_id, forgotten_at, forgotten_by, reason)
		VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO NOTHING`, f.Subject, flux.NormalizeTime(f.At), f.By, f.Reason); err != nil {
		return s.fail(ctx, op, err, nothingCommitted)
	}
	if err := tx.Commit(ctx); err != nil {
		return s.commitFailed(ctx, op, err, outcomeUnknown)
	}
	return nil
}

// Forgotten implements pii.KeyStore.
func (s *Store) Forgotten(ctx context.Context, subject string) (pii.Forgetting, bool, error) {
	if s.closed.Load() {
		return pii.Forgetting{}, false, flux.ErrStoreClosed
	}
	f := pii.Forgetting{Subject: subject}
	err := s.reader().QueryRow(ctx, `SELECT forgotten_at, forgotten_by, reason FROM `+s.q.table("forgotten_subjects")+` WHERE user_id = $1`, subject).Scan(&f.At, &f.By, &f.Reason)
	if errors.Is(err, pgx.ErrNoRows) {
		return pii.Forgetting{}, false, nil
	}
	if err != nil {
		return pii.Forgetting{}, false, s.fail(ctx, fmt.Sprintf("read forgetting of %q", subject), err, "")
	}
	f.At = f.At.UTC()
	return f, true, nil
}

// RewrapKeys implements pii.KeyStore. The table is locked against writes
// (reads go on) for the duration, so no key is created, forgotten or
// rewrapped by someone else halfway through.
func (s *Store) RewrapKeys(ctx context.Context, rewrap func(pii.StoredKey) (pii.StoredKey, error)) (int, error) {
	if s.closed.Load() {
		return 0, flux.ErrStoreClosed
	}
	const op = "rewrap keys"
	keys := s.q.table("encryption_keys")
	tx, err := s.begin(ctx)
	if err != nil {
		return 0, s.fail(ctx, op, err, nothingCommitted)
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, `LOCK TABLE `+keys+` IN EXCLUSIVE MODE`); err != nil {
		return 0, s.fail(ctx, op, err, nothingCommitted)
	}
	rows, err := tx.Query(ctx, `SELECT user_id, encryption_key, created_at, updated_at FROM `+keys+` ORDER BY user_id`)
	if err != nil {
		return 0, s.fail(ctx, op, err, nothingCommitted)
	}
	var old []pii.StoredKey
	for rows.Next() {
		var k pii.StoredKey
		if err := rows.Scan(&k.Subject, &k.Wrapped, &k.CreatedAt, &k.UpdatedAt); err != nil {
			rows.Close()
			return 0, s.fail(ctx, op, err, nothingCommitted)
		}
		k.CreatedAt, k.UpdatedAt = k.CreatedAt.UTC(), k.UpdatedAt.UTC()
		old = append(old, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, s.fail(ctx, op, err, nothingCommitted)
	}
	subjects := make([]string, len(old))
	wrapped := make([]string, len(old))
	updated := make([]time.Time, len(old))
	for i, k := range old {
		nk, err := rewrap(k)
		if err != nil {
			return 0, fmt.Errorf("pgstore: rewrap key of %q: %w", k.Subject, err)
		}
		if strings.IndexByte(nk.Wrapped, 0) >= 0 {
			return 0, fmt.Errorf("pgstore: rewrap key of %q: the wrapped key contains a NUL character, which PostgreSQL cannot store", k.Subject)
		}
		subjects[i], wrapped[i], updated[i] = k.Subject, nk.Wrapped, flux.NormalizeTime(nk.UpdatedAt)
	}
	// One statement for every key.
	tag, err := tx.Exec(ctx, `UPDATE `+keys+` AS k SET encryption_key = u.wrapped, updated_at = u.updated_at
		FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(user_id, wrapped, updated_at)
		WHERE k.user_id = u.user_id`, subjects, wrapped, updated)
	if err != nil {
		return 0, s.fail(ctx, op, err, nothingCommitted)
	}
	if tag.RowsAffected() != int64(len(old)) {
		return 0, fmt.Errorf("pgstore: rewrap keys: updated %d of %d keys; nothing was committed", tag.RowsAffected(), len(old))
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, s.commitFailed(ctx, op, err, outcomeUnknown)
	}
	return len(old), nil
}

// LoadCheckpoint implements projection.CheckpointStore.
func (s *Store) LoadCheckpoint(ctx context.Context, name string) (projection.Checkpoint, error) {
	if s.closed.Load() {
		return projection.Checkpoint{}, flux.ErrStoreClosed
	}
	cp := projection.Checkpoint{Name: name}
	err := s.reader().QueryRow(ctx, `SELECT position, updated_at FROM `+s.q.table("projection_checkpoints")+` WHERE name = $1`, name).Scan(&cp.Position, &cp.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return cp, nil
	}
	if err != nil {
		return projection.Checkpoint{Name: name}, s.fail(ctx, fmt.Sprintf("load checkpoint %q", name), err, "")
	}
	cp.UpdatedAt = cp.UpdatedAt.UTC()
	return cp, nil
}

// SaveCheckpoint implements projection.CheckpointStore: one conditional
// statement moves the checkpoint only from cp.Supersedes.
func (s *Store) SaveCheckpoint(ctx context.Context, cp projection.Checkpoint) error {
	op := fmt.Sprintf("save checkpoint %q", cp.Name)
	if cp.Supersedes == projection.AnyPosition {
		_, err := s.execCount(ctx, op, `INSERT INTO `+s.q.table("projection_checkpoints")+` (name, position, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at`,
			cp.Name, cp.Position, flux.NormalizeTime(cp.UpdatedAt))
		return err
	}
	if s.closed.Load() {
		return flux.ErrStoreClosed
	}
	err := s.readCommitted(ctx, func(tx pgx.Tx) error {
		return moveCheckpoint(ctx, tx, s.q.table("projection_checkpoints"), cp.Supersedes, cp)
	})
	if behind, ok := errors.AsType[*projection.CheckpointBehindError](err); ok {
		return behind
	}
	if err != nil {
		return s.fail(ctx, op, err, writeOutcome(err))
	}
	return nil
}

// ListCheckpoints implements projection.CheckpointStore.
func (s *Store) ListCheckpoints(ctx context.Context) ([]projection.Checkpoint, error) {
	if s.closed.Load() {
		return nil, flux.ErrStoreClosed
	}
	rows, err := s.query(ctx, `SELECT name, position, updated_at FROM `+s.q.table("projection_checkpoints")+` ORDER BY name`)
	if err != nil {
		return nil, s.fail(ctx, "list checkpoints", err, "")
	}
	defer rows.Close()
	var out []projection.Checkpoint
	for rows.Next() {
		var cp projection.Checkpoint
		if err := rows.Scan(&cp.Name, &cp.Position, &cp.UpdatedAt); err != nil {
			return nil, s.fail(ctx, "list checkpoints", err, "")
		}
		cp.UpdatedAt = cp.UpdatedAt.UTC()
		out = append(out, cp)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "list checkpoints", err, "")
	}
	return out, nil
}

// DeleteCheckpoint implements projection.CheckpointStore.
func (s *Store) DeleteCheckpoint(ctx context.Context, name string) error {
	_, err := s.execCount(ctx, fmt.Sprintf("delete checkpoint %q", name), `DELETE FROM `+s.q.table("projection_checkpoints")+` WHERE name = $1`, name)
	return err
}
