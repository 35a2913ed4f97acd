package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/txhook"
	"github.com/fluxcapacitor/flux/wake"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Options configure a Store. Nil or the zero value gives the defaults.
type Options struct {
	// Schema is the PostgreSQL schema that holds the store's tables. Every
	// statement qualifies its tables with it, so stores in different
	// schemas of one database are independent (tests give each store its
	// own). Migrate creates the schema when it is missing. At most 63
	// bytes, and not starting with "pg_". Default: "public".
	Schema string

	// MaxEventSize limits one encoded payload in bytes; Append rejects a
	// larger event with a *flux.EventTooLargeError before any I/O.
	// Default: flux.DefaultMaxEventSize (4 MiB).
	MaxEventSize int

	// SkipMigrate stops Open and New from calling Migrate. Default false:
	// the schema is brought up to date when the store opens, which needs a
	// role that may create schemas and tables. Set it when migrations run
	// as a separate deployment step with a privileged role (call
	// Store.Migrate there); a store opened with SkipMigrate on an
	// unmigrated schema fails its first statement with "relation does not
	// exist".
	SkipMigrate bool

	// MaxAppendConns bounds how many of the pool's connections appends
	// hold at once. Appends queue on the log head (see Append) while
	// holding a connection; without a bound, one slow append and a queue
	// of others take every connection, and reads (which take no lock)
	// wait for a connection instead. Appends beyond the bound wait, before
	// taking a connection, until one of the appends holding one finishes
	// (or their context ends). Default: half the pool's MaxConns, at least
	// 1; it must be below MaxConns when the pool has more than one
	// connection, so reads always have one.
	MaxAppendConns int

	// Logger receives diagnostics: the LISTEN connection behind Wake lost
	// and re-established, appends found committed after their COMMIT lost
	// its connection. Default: discard.
	Logger *slog.Logger
}

func (o *Options) withDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.Schema == "" {
		c.Schema = "public"
	}
	if c.MaxEventSize <= 0 {
		c.MaxEventSize = flux.DefaultMaxEventSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

func (o Options) validate() error {
	var errs []error
	switch {
	case len(o.Schema) > 63:
		errs = append(errs, fmt.Errorf("pgstore: Options.Schema %q is %d bytes; PostgreSQL names are at most 63", o.Schema, len(o.Schema)))
	case strings.ContainsRune(o.Schema, 0):
		errs = append(errs, fmt.Errorf("pgstore: Options.Schema %q contains a NUL byte", o.Schema))
	case strings.HasPrefix(o.Schema, "pg_"):
		errs = append(errs, fmt.Errorf("pgstore: Options.Schema %q: names starting with pg_ are reserved for PostgreSQL's system schemas", o.Schema))
	}
	if o.MaxAppendConns < 0 {
		errs = append(errs, fmt.Errorf("pgstore: Options.MaxAppendConns %d is negative; use 0 for the default (half the pool)", o.MaxAppendConns))
	}
	return errors.Join(errs...)
}

// Store is a flux.EventStore in a PostgreSQL schema, accessed through a
// pgx connection pool. It is safe for concurrent use by many goroutines.
type Store struct {
	pool    *pgxpool.Pool
	ownPool bool // opened by Open: closed by Close, reset on server shutdown
	opts    Options
	q       queries
	channel string // LISTEN/NOTIFY channel of this schema

	appendSlots chan struct{} // one token per connection appends may hold (Options.MaxAppendConns)

	appended wake.Broadcaster // signalled after appends commit (here or, via NOTIFY, anywhere)
	listen   listener

	closeOnce sync.Once
	closed    atomic.Bool
}

var _ flux.EventStore = (*Store)(nil)

// Open connects to the database at dsn (a PostgreSQL URL or key=value
// string, with pgxpool's pool_* settings), checks that it is reachable and,
// unless opts.SkipMigrate, brings the schema up to date. The Store owns its
// pool: Close closes it. opts may be nil.
//
// The pool is configured so that a cancelled context cancels the running
// statement on the server (a PostgreSQL cancel request; pgx then waits
// about 100ms before the call returns) and keeps the connection, instead of
// dropping it; this matters for appends queued on the log head.
//
// Open returns an error matching flux.ErrStoreUnavailable when the server
// cannot be reached.
func Open(ctx context.Context, dsn string, opts *Options) (*Store, error) {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err) // pgconn redacts the password
	}
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: cancelDeadlineDelay}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, interpretError(ctx, "open", err, "")
	}
	s, err := newStore(ctx, pool, o)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownPool = true
	return s, nil
}

// cancelDeadlineDelay is how long a statement whose context was cancelled
// waits for the server to confirm the cancellation before the connection is
// dropped instead.
const cancelDeadlineDelay = 3 * time.Second

// New returns a Store on pool and, unless opts.SkipMigrate, brings the
// schema up to date. The Store does not close pool: Close leaves it open
// for its owner. opts may be nil.
//
// How a cancelled context is handled is the pool's configuration (pgx's
// default drops the connection; see Open for the alternative).
func New(ctx context.Context, pool *pgxpool.Pool, opts *Options) (*Store, error) {
	if pool == nil {
		return nil, errors.New("pgstore: New: pool is nil; pass a *pgxpool.Pool or use Open")
	}
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	return newStore(ctx, pool, o)
}

func newStore(ctx context.Context, pool *pgxpool.Pool, o Options) (*Store, error) {
	poolSize := int(pool.Config().MaxConns)
	slots := o.MaxAppendConns
	switch {
	case slots == 0:
		slots = max(poolSize/2, 1)
	case poolSize > 1 && slots >= poolSize:
		return nil, fmt.Errorf("pgstore: Options.MaxAppendConns is %d but the pool has %d connections: appends waiting on the log head could hold every one and stall reads; use at most %d, or 0 for the default (%d)",
			slots, poolSize, poolSize-1, max(poolSize/2, 1))
	}
	s := &Store{pool: pool, opts: o, q: newQueries(o.Schema), channel: channelName(o.Schema), appendSlots: make(chan struct{}, slots)}
	s.listen.store = s
	if !o.SkipMigrate {
		if err := s.Migrate(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Pool returns the store's connection pool, for read models that live
// beside the events (see ProjectTx). Do not close it.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Schema returns the schema holding the store's tables; qualify read-model
// tables with it (pgx.Identifier{s.Schema(), "balances"}.Sanitize()).
func (s *Store) Schema() string { return s.opts.Schema }

// Close stops the LISTEN connection behind Wake and, if Open created the
// pool, closes it (waiting for connections in use to be released). It is
// idempotent; afterwards every method returns flux.ErrStoreClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.listen.stop()
		if s.ownPool {
			s.pool.Close()
		}
	})
	return nil
}

// Append implements flux.EventStore.
//
// # Global log order
//
// The first statement of every append transaction advances the log head,
//
//	UPDATE log_head SET position = position + n RETURNING position
//
// and the append's n events take the n positions up to the returned
// value. The row lock this takes is held until the transaction ends, so a
// second append waits at this statement until the first has committed or
// rolled back. PostgreSQL releases a transaction's row locks only after its
// commit is visible to new snapshots, and under READ COMMITTED the waiting
// UPDATE then reads the committed row, and every later statement of the
// transaction takes a snapshot that includes the commit. Hence:
//
//   - positions are handed out in commit order: an append that gets higher
//     positions commits after every append with lower ones has finished, so
//     a reader that has seen position p can never later see a new event at
//     a position <= p;
//   - positions are dense: a rolled-back append rolls back its head update
//     too, and the next append continues from the same value;
//   - every statement after the head update sees all earlier appends, so
//     the expected-version checks below and flux.Any's "current version"
//     read are exact.
//
// The cost: appends are serialised. Each one holds the head lock from its
// first statement through its commit (one WAL flush), so concurrent writers
// no longer share commit flushes and total append throughput is bounded by
// one writer's commit latency (BenchmarkAppendConcurrent4 measures it next
// to unserialised raw inserts). Readers never wait: the log is read with
// plain MVCC snapshots and no lock, and appends hold at most
// Options.MaxAppendConns of the pool's connections, so appends queued on
// the head never take the connections readers need.
//
// # Optimistic concurrency
//
// UNIQUE (aggregate_id, version) and the INSERT itself decide every race,
// never a read in Go. For an exact expected version v the INSERT inserts
// nothing unless the stream's current version is v, so neither a stale
// writer nor one expecting a version the stream has not reached (which
// would leave a gap) writes; NoStream inserts from version 1 and meets the
// unique constraint if the stream exists; flux.Any continues from the
// version read in the same statement. A conflict is returned as a
// *flux.ConflictError with the stream's actual version: read in the still
// open transaction when the INSERT wrote nothing, after the rollback when
// the unique constraint refused it.
//
// # Round trips
//
// One round trip carries the whole append up to COMMIT (a pgx.Batch:
// BEGIN, head and NOTIFY, idempotency key, one multi-row INSERT per stream
// from unnest()ed arrays, snapshots); COMMIT is the second.
//
// # Failures
//
// Nothing of a failed append is written. If its connection turns out to be
// dead before COMMIT (a pooled connection closed by a server restart), the
// append runs once more on a new connection. If the connection breaks
// after COMMIT was sent, the store asks the database on a new connection
// whether the append committed (see checkCommitted) and answers
// accordingly; only if it cannot ask does the error (matching
// flux.ErrStoreUnavailable) say that the outcome is unknown, and how to
// check.
func (s *Store) Append(ctx context.Context, req flux.AppendRequest) (flux.AppendResult, error) {
	if err := flux.ValidateAppend(&req, s.opts.MaxEventSize); err != nil {
		return flux.AppendResult{}, err
	}
	if err := checkStorable(&req); err != nil {
		return flux.AppendResult{}, err
	}
	if s.closed.Load() {
		return flux.AppendResult{}, flux.ErrStoreClosed
	}
	if err := ctx.Err(); err != nil {
		return flux.AppendResult{}, fmt.Errorf("pgstore: append: %w; %s", err, nothingCommitted)
	}
	// Given times become a running maximum here; the INSERTs raise them to
	// the log's last time after the head lock (see queries.insert).
	flux.StampTimes(&req, time.Time{})

	res, retry, err := s.appendOnce(ctx, &req)
	for retries := s.staleRetries(); retry && retries > 0; retries-- {
		// The connection was dead before anything could commit (typically
		// a pooled connection the server or a proxy closed while it sat
		// idle, as in a restart): run the append again on another
		// connection, up to once per connection of the pool.
		res2, retry2, err2 := s.appendOnce(ctx, &req)
		if err2 == nil || !errors.Is(err2, flux.ErrStoreUnavailable) {
			return res2, err2
		}
		// Still unavailable: report the first failure, which says what
		// happened to the append's connection.
		retry = retry2
	}
	return res, err
}

// appendOnce runs an append in one transaction on one connection. retry
// reports that it failed because the connection was lost before COMMIT was
// sent, so nothing was committed and running it again is safe.
func (s *Store) appendOnce(ctx context.Context, req *flux.AppendRequest) (res flux.AppendResult, retry bool, err error) {
	total := 0
	for i := range req.Streams {
		total += len(req.Streams[i].Events)
	}
	// The batch, in order: BEGIN, the log head (and NOTIFY), the
	// idempotency key, one INSERT per stream, the snapshots. BEGIN travels
	// with the rest: the whole append up to COMMIT is one round trip.
	batch := &pgx.Batch{}
	batch.Queue(beginReadCommitted)
	if total > 0 {
		batch.Queue(s.q.advanceHead, total, s.channel)
	}
	if k := req.Idempotency; k != nil {
		batch.Queue(s.q.insertIdempotency, k.Key, nonNil(k.Result), flux.NormalizeTime(k.CreatedAt))
	}
	offset := 0
	for i := range req.Streams {
		st := &req.Streams[i]
		query, args := s.q.insertEvents(st, total-offset)
		batch.Queue(query, args...)
		offset += len(st.Events)
	}
	for i := range req.Snapshots {
		w := &req.Snapshots[i]
		data, exact := jsonbText(w.Data)
		batch.Queue(s.q.upsertSnapshot, w.StreamID, w.AggregateType, w.Version, w.SchemaVersion, data, exact, flux.NormalizeTime(w.CreatedAt))
		if w.Keep > 0 {
			batch.Queue(s.q.pruneStreamSnapshots, w.StreamID, w.Keep)
		}
	}

	// Take an append slot before a connection (see Options.MaxAppendConns),
	// so appends queued on the log head leave connections to readers.
	select {
	case s.appendSlots <- struct{}{}:
		defer func() { <-s.appendSlots }()
	case <-ctx.Done():
		return res, false, s.fail(ctx, "append: wait for an append connection", ctx.Err(), nothingCommitted)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return res, false, s.fail(ctx, "append", err, nothingCommitted)
	}
	// release rolls back the transaction if it is still open and gives the
	// connection back; if the rollback fails the pool closes the
	// connection, which makes the server roll back.
	inTx, released := true, false
	release := func() {
		if released {
			return
		}
		released = true
		if inTx {
			rollbackConn(ctx, conn)
		}
		conn.Release()
	}
	defer release()

	res.Versions = make([]int64, len(req.Streams))
	var earliest time.Time // the earliest time stored
	short := -1            // index of a stream that was not at its expected version
	failed := -1           // index of the stream whose INSERT failed
	err = func() error {
		br := conn.SendBatch(ctx, batch)
		defer br.Close()
		if _, err := br.Exec(); err != nil { // BEGIN
			return err
		}
		if total > 0 {
			var head int64
			if err := br.QueryRow().Scan(&head); err != nil {
				return err
			}
			res.Positions = make([]int64, total)
			for i := range res.Positions {
				res.Positions[i] = head - int64(total) + int64(i) + 1
			}
		}
		if req.Idempotency != nil {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		for i := range req.Streams {
			var n, last int64
			var first *time.Time
			if err := br.QueryRow().Scan(&n, &last, &first); err != nil {
				failed = i
				return err
			}
			if first != nil && (earliest.IsZero() || first.Before(earliest)) {
				earliest = *first
			}
			if n != int64(len(req.Streams[i].Events)) && short < 0 {
				short = i
			}
			res.Versions[i] = last
		}
		for i := range req.Snapshots {
			if _, err := br.Exec(); err != nil {
				return err
			}
			if req.Snapshots[i].Keep > 0 {
				if _, err := br.Exec(); err != nil {
					return err
				}
			}
		}
		return br.Close()
	}()
	if err != nil {
		if s.stale(ctx, err) {
			return flux.AppendResult{}, true, s.fail(ctx, "append", err, nothingCommitted)
		}
		release() // before appendFailed reads through the pool
		return flux.AppendResult{}, false, s.appendFailed(ctx, req, failed, err)
	}
	if short >= 0 {
		// The stream was not at the expected version, so the INSERT wrote
		// nothing. The transaction still holds the log head, so this read
		// is exactly what the INSERT saw.
		return flux.AppendResult{}, false, s.conflict(ctx, conn, &req.Streams[short])
	}
	if err := txhook.BeforeCommit(ctx); err != nil {
		return flux.AppendResult{}, false, err
	}
	inTx = false
	tag, err := conn.Exec(ctx, "COMMIT")
	switch {
	case err != nil && commitRolledBack(err):
		return flux.AppendResult{}, false, s.fail(ctx, "append: commit", err, nothingCommitted)
	case err != nil:
		// The connection broke after COMMIT was sent: ask the database.
		release()
		switch committed, known := s.checkCommitted(ctx, req); {
		case known && committed:
			s.opts.Logger.WarnContext(ctx, "pgstore: the connection broke during COMMIT, but the append was committed", "schema", s.opts.Schema, "err", err)
		case known:
			return flux.AppendResult{}, false, s.fail(ctx, "append: commit", err, nothingCommitted)
		default:
			return flux.AppendResult{}, false, s.fail(ctx, "append: commit", err, appendOutcomeUnknown(req))
		}
	case tag.String() == "ROLLBACK": // the transaction had failed: COMMIT rolled it back
		return flux.AppendResult{}, false, s.fail(ctx, "append: commit", pgx.ErrTxCommitRollback, nothingCommitted)
	}
	if total > 0 {
		// The times stored: the given running maximum, raised to the
		// log's last time, which the earliest of them is when it was later.
		res.OccurredAt = flux.StampTimes(req, earliest)
		s.appended.Signal()
	}
	return res, false, nil
}

// rollbackConn rolls back conn's open transaction. It runs even when ctx
// is done, so a cancelled append gives its connection back clean; if the
// rollback fails the connection is closed, which rolls back too.
func rollbackConn(ctx context.Context, conn *pgxpool.Conn) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(rctx, "ROLLBACK"); err != nil {
		conn.Conn().Close(rctx)
	}
}

// rollback ends tx if it is still open. It runs even when ctx is done, so a
// cancelled append gives its connection back clean instead of dropping it.
func rollback(ctx context.Context, tx pgx.Tx) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = tx.Rollback(rctx)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// appendFailed turns an error of the append batch into what the caller
// sees: a conflict, a duplicate command or an interpreted driver error.
// failed is the index of the stream whose INSERT failed, or -1. The
// transaction has been rolled back; nothing of the append was committed.
func (s *Store) appendFailed(ctx context.Context, req *flux.AppendRequest, failed int, err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || ctx.Err() != nil {
		return s.fail(ctx, "append", err, nothingCommitted)
	}
	if strings.HasPrefix(pgErr.Code, "22") { // data exception: a value the column type refuses
		what := "a value of the append"
		if failed >= 0 {
			what = fmt.Sprintf("a value of an event of stream %q", req.Streams[failed].StreamID)
		}
		return fmt.Errorf("%w: pgstore: append: PostgreSQL refused %s (%s); nothing was committed: %w", flux.ErrInvalidAppend, what, pgErr.Message, err)
	}
	if pgErr.Code != uniqueViolation {
		return s.fail(ctx, "append", err, nothingCommitted)
	}
	switch pgErr.ConstraintName {
	case "unique_aggregate_version":
		// Another append took a version this one needed. Which stream: the
		// key in the error's detail names it; fall back to the first stream
		// whose expectation no longer holds.
		if st := conflictingStream(req, pgErr.Detail); st != nil {
			return s.conflict(ctx, s.reader(), st)
		}
		for i := range req.Streams {
			st := &req.Streams[i]
			if actual, ok := s.streamVersion(ctx, s.reader(), st.StreamID); ok && !st.Expected.Accepts(actual) {
				return &flux.ConflictError{StreamID: st.StreamID, Expected: st.Expected, Actual: actual}
			}
		}
		return &flux.ConflictError{StreamID: req.Streams[0].StreamID, Expected: req.Streams[0].Expected, Actual: -1}
	case "idempotency_keys_pkey":
		first, found, lerr := lookupIdempotency(ctx, s.reader(), s.q, req.Idempotency.Key)
		if lerr != nil || !found {
			// The first record vanished or cannot be read; still a duplicate.
			first = flux.IdempotencyRecord{Key: req.Idempotency.Key}
		}
		return &flux.IdempotencyError{Record: first}
	case "unique_event_id":
		return fmt.Errorf("%w: pgstore: append: an event ID is already stored (%s): these events, or others with the same IDs, were appended before; nothing was committed",
			flux.ErrInvalidAppend, pgErr.Detail)
	}
	return s.fail(ctx, "append", err, nothingCommitted)
}

// conflictingStream finds the stream named by a unique violation's detail,
// `Key (aggregate_id, version)=(<id>, <version>) already exists.`
func conflictingStream(req *flux.AppendRequest, detail string) *flux.StreamAppend {
	const prefix = "Key (aggregate_id, version)=("
	rest, ok := strings.CutPrefix(detail, prefix)
	if !ok {
		return nil
	}
	i := strings.LastIndex(rest, ", ")
	if i < 0 {
		return nil
	}
	id := rest[:i]
	for j := range req.Streams {
		if req.Streams[j].StreamID == id {
			return &req.Streams[j]
		}
	}
	return nil
}

type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// conflict builds the ConflictError for st, reading the stream's actual
// version through q (the still-open transaction, or the pool after a
// rollback).
func (s *Store) conflict(ctx context.Context, q rowQuerier, st *flux.StreamAppend) error {
	actual, ok := s.streamVersion(ctx, q, st.StreamID)
	return &flux.ConflictError{StreamID: st.StreamID, Expected: st.Expected, Actual: actualOrUnknown(actual, ok)}
}

func actualOrUnknown(v int64, ok bool) int64 {
	if !ok {
		return -1
	}
	return v
}

func (s *Store) streamVersion(ctx context.Context, q rowQuerier, streamID string) (int64, bool) {
	var v int64
	if err := q.QueryRow(ctx, s.q.streamVersion, streamID).Scan(&v); err != nil {
		return 0, false
	}
	return v, true
}

// commitFailed interprets an error of COMMIT. Unlike every earlier step,
// the outcome may be unknown: if the connection broke after COMMIT was
// sent, the server may have committed. unknown is the message for that case.
func (s *Store) commitFailed(ctx context.Context, op string, err error, unknown string) error {
	if commitRolledBack(err) {
		return s.fail(ctx, op+": commit", err, nothingCommitted)
	}
	return s.fail(ctx, op+": commit", err, unknown)
}

// commitRolledBack reports whether err from COMMIT proves that the
// transaction did not commit: the server answered COMMIT with an error and
// lives on, or answered ROLLBACK. A FATAL error (such as 57P01 when the
// server shuts down) is no proof: the backend may have committed before it
// processed the termination. Nor is pgconn.SafeToRetry: pgx v5.12 reports a
// connection that broke after COMMIT was sent as "conn closed", an error
// that claims nothing was sent (it reads the reply with peekMessage, which
// closes the connection on EOF and drops the error, then fails the lock).
func commitRolledBack(err error) bool {
	var pgErr *pgconn.PgError
	return errors.Is(err, pgx.ErrTxCommitRollback) || errors.As(err, &pgErr) && !fatal(pgErr)
}

// commitCheckTimeout bounds checkCommitted, which runs even when the
// caller's context is done.
const commitCheckTimeout = 5 * time.Second

// checkCommitted asks the database, on another connection, whether an
// append whose COMMIT lost its connection was committed: known is false
// when it cannot tell. For an append with events it first takes the log
// head FOR SHARE, which waits until the orphaned transaction (holding the
// head) has committed or, its client gone, rolled back; then it looks for
// the first event's ID. An append of an idempotency key only is known
// committed when the key is found, and unknown otherwise.
func (s *Store) checkCommitted(ctx context.Context, req *flux.AppendRequest) (committed, known bool) {
	if len(req.Streams) == 0 && req.Idempotency == nil {
		return false, false
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitCheckTimeout)
	defer cancel()
	tx, err := s.begin(cctx)
	if err != nil {
		return false, false
	}
	defer rollback(cctx, tx)
	if len(req.Streams) == 0 {
		rec, found, err := lookupIdempotency(cctx, tx, s.q, req.Idempotency.Key)
		if err == nil && found && rec.CreatedAt.Equal(flux.NormalizeTime(req.Idempotency.CreatedAt)) {
			return true, true
		}
		return false, false
	}
	if _, err := tx.Exec(cctx, s.q.head+` FOR SHARE`); err != nil {
		return false, false
	}
	var found bool
	if err := tx.QueryRow(cctx, `SELECT EXISTS (SELECT 1 FROM `+s.q.table("events")+` WHERE event_id = $1)`, req.Streams[0].Events[0].EventID).Scan(&found); err != nil {
		return false, false
	}
	return found, true
}

// appendOutcomeUnknown says that req may or may not have been committed,
// and how to find out.
func appendOutcomeUnknown(req *flux.AppendRequest) string {
	const unknown = "the outcome is unknown: the connection broke after COMMIT was sent and the database could not be asked whether the append was committed; before retrying, "
	switch {
	case len(req.Streams) > 0:
		return unknown + fmt.Sprintf("check whether event %s of stream %q is stored (event IDs are unique)", req.Streams[0].Events[0].EventID, req.Streams[0].StreamID)
	case req.Idempotency != nil:
		return unknown + fmt.Sprintf("look up idempotency key %q", req.Idempotency.Key)
	}
	return unknown + "check whether its snapshots are stored"
}

// fatal reports whether the server ended the session with pgErr.
func fatal(pgErr *pgconn.PgError) bool {
	sev := pgErr.SeverityUnlocalized
	if sev == "" {
		sev = pgErr.Severity
	}
	return sev == "FATAL" || sev == "PANIC"
}
