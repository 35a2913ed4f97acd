package mysqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/txhook"
	"github.com/fluxcapacitor/flux/wake"
	"github.com/go-sql-driver/mysql"
)

// Options configure a Store. Nil or the zero value gives the defaults;
// negative values are rejected.
type Options struct {
	// MaxEventSize limits one encoded payload in bytes. Default:
	// flux.DefaultMaxEventSize (4 MiB). It must leave 64 KiB of the
	// server's max_allowed_packet free (MariaDB's default is 16 MiB,
	// MySQL 8's 64 MiB); Open and New fail otherwise.
	MaxEventSize int
	// MaxOpenConns caps the connections of each of the two pools Open
	// creates (one for appends, one for everything else); idle
	// connections are kept up to the same number. Default: 10. New leaves
	// the caller's pool as it is.
	MaxOpenConns int
	// ConnMaxLifetime closes connections of the pool Open creates after
	// this long, before the server or a proxy drops them. Default: 3
	// minutes (the driver's recommendation). New leaves the caller's pool
	// as it is.
	ConnMaxLifetime time.Duration
	// DeadlockRetries is how many times a transaction that InnoDB rolled
	// back as a deadlock victim (error 1213) is run again before the
	// error is returned. Appends never deadlock with each other (they
	// queue on the log head), but may with other programs' transactions;
	// key creation and projection checkpoints may deadlock on gap locks.
	// Default: 3.
	DeadlockRetries int
	// SkipMigrate makes Open and New skip Migrate, for deployments that
	// migrate separately with a more privileged user. Default: false.
	SkipMigrate bool
	// Logger receives diagnostics: retried deadlocks, commit outcomes
	// checked after a lost connection, the driver's own messages (Open
	// only). Default: discard.
	Logger *slog.Logger
}

const (
	defaultMaxOpenConns    = 10
	defaultConnMaxLifetime = 3 * time.Minute
	defaultDeadlockRetries = 3
	// packetReserve is the part of max_allowed_packet kept free for the
	// SQL text and the other columns around one maximal event.
	packetReserve = 64 << 10
	// maxRowsPerInsert bounds the rows of one multi-row INSERT (13
	// placeholders each), below the 65535 placeholders of a prepared
	// statement, which the driver falls back to for very large statements.
	maxRowsPerInsert = 1000
	// maxRowsCheckedInInsert is the most events of one stream whose exact
	// expected version is checked inside their INSERT ... SELECT, one
	// UNION ALL member per event. Each member costs the server about a
	// fifth of a round trip (measured on MariaDB 10.11), so larger
	// batches read the version first and use a multi-row VALUES list.
	maxRowsCheckedInInsert = 4
	// commitCheckTimeout bounds the check, after a connection broke during
	// COMMIT, of whether the append was written.
	commitCheckTimeout = 10 * time.Second
)

func (o *Options) withDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.MaxEventSize == 0 {
		c.MaxEventSize = flux.DefaultMaxEventSize
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = defaultMaxOpenConns
	}
	if c.ConnMaxLifetime == 0 {
		c.ConnMaxLifetime = defaultConnMaxLifetime
	}
	if c.DeadlockRetries == 0 {
		c.DeadlockRetries = defaultDeadlockRetries
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

func (o Options) validate() error {
	var errs []error
	if o.MaxEventSize < 0 {
		errs = append(errs, fmt.Errorf("mysqlstore: Options.MaxEventSize %d is negative; use 0 for the default (%d)", o.MaxEventSize, flux.DefaultMaxEventSize))
	}
	if o.MaxOpenConns < 0 {
		errs = append(errs, fmt.Errorf("mysqlstore: Options.MaxOpenConns %d is negative; use 0 for the default (%d)", o.MaxOpenConns, defaultMaxOpenConns))
	}
	if o.ConnMaxLifetime < 0 {
		errs = append(errs, fmt.Errorf("mysqlstore: Options.ConnMaxLifetime %v is negative; use 0 for the default (%v)", o.ConnMaxLifetime, defaultConnMaxLifetime))
	}
	if o.DeadlockRetries < 0 {
		errs = append(errs, fmt.Errorf("mysqlstore: Options.DeadlockRetries %d is negative; use 0 for the default (%d)", o.DeadlockRetries, defaultDeadlockRetries))
	}
	return errors.Join(errs...)
}

// Store is a flux.EventStore in a MySQL or MariaDB database. It is safe
// for concurrent use by many goroutines.
type Store struct {
	db    *sql.DB
	wdb   *sql.DB // appends' connections (autocommit=0); nil on New's pool
	owned bool    // Open created db and wdb, so Close closes them
	opts  Options
	log   *slog.Logger

	// stmtBudget is the byte size one multi-row INSERT may reach:
	// max_allowed_packet minus packetReserve.
	stmtBudget int

	appended wake.Broadcaster // signalled after every committed append

	closeOnce sync.Once
	closed    atomic.Bool
}

var _ flux.EventStore = (*Store)(nil)

// Open connects to the database named by dsn (the driver's format,
// user:password@tcp(host:3306)/dbname?param=value, see
// github.com/go-sql-driver/mysql), checks the server and, unless
// Options.SkipMigrate is set, brings the schema up to date. opts may be
// nil. Close closes the pools Open created.
//
// Open overrides these DSN settings, which the store depends on:
//
//   - parseTime=true and loc=UTC: DATETIME columns are read as time.Time
//     in UTC (the store writes UTC and never converts through the session
//     time zone);
//   - interpolateParams=true: arguments are escaped into the statement
//     client-side, so a statement costs one round trip instead of three
//     (prepare, execute, close); the driver still falls back to a
//     prepared statement for statements too large to interpolate;
//   - maxAllowedPacket=0: the driver reads max_allowed_packet from the
//     server, so it knows when to make that fallback;
//   - multiStatements=false on the first pool (see below): every statement
//     is sent alone;
//   - checkConnLiveness=true: connections the server dropped (a restart)
//     are found and replaced before use.
//
// Whatever isolation level the DSN (transaction_isolation, tx_isolation)
// or the server's default sets, every session Open creates runs at
// REPEATABLE READ (see isolation.go): at READ UNCOMMITTED a subscription
// could read events of appends that later roll back.
//
// Open creates two pools on the DSN. Appends run on the second, whose
// connections also set autocommit=0 and multiStatements=true: the head
// UPDATE starts the transaction, and the usual save of one aggregate
// sends the head UPDATE and its INSERT in one round trip (see Append).
// Only the store's own statements run there, their arguments escaped by
// the driver. DB returns the first pool.
//
// The connection must use utf8mb4, the driver's default; a charset or
// collation parameter naming anything else is an error. Other parameters
// (tls, timeout, readTimeout, ...) are kept. Errors reaching the server
// match flux.ErrStoreUnavailable.
func Open(ctx context.Context, dsn string, opts *Options) (*Store, error) {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	cfg, err := driverConfig(dsn, o)
	if err != nil {
		return nil, err
	}
	wcfg := cfg.Clone()
	if wcfg.Params == nil {
		wcfg.Params = map[string]string{}
	}
	wcfg.Params["autocommit"] = "0"
	wcfg.MultiStatements = true
	db, err := openPool(cfg)
	if err != nil {
		return nil, err
	}
	wdb, err := openPool(wcfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	for _, p := range []*sql.DB{db, wdb} {
		p.SetMaxOpenConns(o.MaxOpenConns)
		p.SetMaxIdleConns(o.MaxOpenConns)
		p.SetConnMaxLifetime(o.ConnMaxLifetime)
	}
	s, err := newStore(ctx, db, o, true)
	if err != nil {
		db.Close()
		wdb.Close()
		return nil, err
	}
	s.wdb = wdb
	return s, nil
}

// driverConfig parses dsn and forces the settings Open documents.
func driverConfig(dsn string, o Options) (*mysql.Config, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: parse DSN: %w", err)
	}
	if cfg.DBName == "" {
		return nil, errors.New("mysqlstore: the DSN names no database; end it with /dbname (user@tcp(host:3306)/flux)")
	}
	if cfg.Collation != "" && !strings.HasPrefix(cfg.Collation, "utf8mb4_") {
		return nil, fmt.Errorf("mysqlstore: DSN collation %q is not a utf8mb4 collation; remove it or use utf8mb4_general_ci", cfg.Collation)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.InterpolateParams = true
	cfg.MaxAllowedPacket = 0
	cfg.MultiStatements = false
	cfg.CheckConnLiveness = true
	cfg.Logger = driverLogger{o.Logger}
	return cfg, nil
}

// New returns a Store on a pool the caller opened with the
// go-sql-driver/mysql driver; Close leaves the pool open. It checks the
// server and, unless Options.SkipMigrate is set, brings the schema up to
// date. opts may be nil.
//
// The store writes times as UTC text and reads them by their wall clock,
// so it works whatever the pool's parseTime and loc; the connections must
// use utf8mb4. For speed, open the pool with interpolateParams=true (see
// Open): without it every statement with arguments costs the driver three
// round trips.
//
// New cannot change the isolation level of the caller's sessions: it
// refuses a pool whose sessions run at READ UNCOMMITTED (set by the DSN or
// the server's default), where a subscription could read events of appends
// that later roll back.
func New(ctx context.Context, db *sql.DB, opts *Options) (*Store, error) {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, errors.New("mysqlstore: New: db is nil")
	}
	return newStore(ctx, db, o, false)
}

func newStore(ctx context.Context, db *sql.DB, o Options, owned bool) (*Store, error) {
	s := &Store{db: db, owned: owned, opts: o, log: o.Logger}
	var (
		maxPacket                int64
		server, csClient, csConn string
	)
	err := db.QueryRowContext(ctx, `SELECT VERSION(), @@max_allowed_packet, @@character_set_client, @@character_set_connection`).
		Scan(&server, &maxPacket, &csClient, &csConn)
	if err != nil {
		return nil, s.readError(ctx, "connect", err)
	}
	if csClient != "utf8mb4" || csConn != "utf8mb4" {
		return nil, fmt.Errorf("mysqlstore: the connection to %s uses character set %s/%s; FluxCapacitor needs utf8mb4 (drop charset= from the DSN)", server, csClient, csConn)
	}
	if int64(o.MaxEventSize)+packetReserve > maxPacket {
		return nil, fmt.Errorf("mysqlstore: Options.MaxEventSize is %d bytes but the max_allowed_packet of %s is %d; raise max_allowed_packet to at least %d or lower MaxEventSize",
			o.MaxEventSize, server, maxPacket, int64(o.MaxEventSize)+packetReserve)
	}
	s.stmtBudget = int(maxPacket - packetReserve)
	level, err := isolationLevel(ctx, db)
	if err != nil {
		return nil, s.readError(ctx, "connect", err)
	}
	if strings.Contains(level, "UNCOMMITTED") {
		return nil, fmt.Errorf("mysqlstore: the sessions of the pool run at isolation level %s, where readers see appends that have not committed (a subscription could skip events); remove transaction_isolation/tx_isolation from the DSN, or open the store with Open, which pins its sessions to REPEATABLE READ", level)
	}
	if !o.SkipMigrate {
		if err := s.Migrate(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

type driverLogger struct{ l *slog.Logger }

func (d driverLogger) Print(v ...any) { d.l.Debug("mysql driver", "msg", fmt.Sprint(v...)) }

// DB returns the store's pool, for read models that live beside the
// events (see ProjectTx). Do not close it.
func (s *Store) DB() *sql.DB { return s.db }

// Close marks the store closed and, if Open created the pool, closes it.
// Operations in flight finish; every later call returns
// flux.ErrStoreClosed. Close is idempotent.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		if s.owned {
			err = s.db.Close()
			if s.wdb != nil {
				err = errors.Join(err, s.wdb.Close())
			}
		}
	})
	return err
}

// timeLayout is how times are written: DATETIME(6) text in UTC.
const timeLayout = "2006-01-02 15:04:05.000000"

func formatTime(t time.Time) string { return flux.NormalizeTime(t).Format(timeLayout) }

// utcTime scans a DATETIME(6) column holding UTC whatever the pool's
// parseTime and loc: a time.Time is taken by its wall clock, text parsed.
type utcTime struct{ t *time.Time }

func (u utcTime) Scan(v any) error {
	switch x := v.(type) {
	case time.Time:
		*u.t = time.Date(x.Year(), x.Month(), x.Day(), x.Hour(), x.Minute(), x.Second(), x.Nanosecond(), time.UTC)
		return nil
	case []byte:
		return u.parse(string(x))
	case string:
		return u.parse(x)
	case nil:
		return errors.New("time is NULL")
	}
	return fmt.Errorf("time column holds %T", v)
}

func (u utcTime) parse(s string) error {
	layout := timeLayout
	if len(s) == len("2006-01-02 15:04:05") {
		layout = "2006-01-02 15:04:05"
	}
	t, err := time.ParseInLocation(layout, s, time.UTC)
	if err != nil {
		return fmt.Errorf("time %q is not in the form %s", s, timeLayout)
	}
	*u.t = t
	return nil
}

// maxColumnChars is the width of the VARCHAR(255) columns, in characters.
const maxColumnChars = 255

// checkColumns rejects what ValidateAppend lets through but the tables
// cannot hold: payloads and snapshots that are not valid UTF-8 (utf8mb4
// JSON columns refuse them), metadata IDs longer than their VARCHAR(255)
// columns or not valid UTF-8. It runs before any I/O, like ValidateAppend.
func checkColumns(req *flux.AppendRequest) error {
	for i := range req.Snapshots {
		if sn := &req.Snapshots[i]; !utf8.Valid(sn.Data) {
			return fmt.Errorf("%w: snapshot of stream %q version %d: data is not valid UTF-8", flux.ErrInvalidAppend, sn.StreamID, sn.Version)
		}
	}
	for i := range req.Streams {
		st := &req.Streams[i]
		for j := range st.Events {
			e := &st.Events[j]
			if !utf8.Valid(e.Payload) {
				return fmt.Errorf("%w: stream %q event %s: payload is not valid UTF-8", flux.ErrInvalidAppend, st.StreamID, e.EventName)
			}
			for _, f := range [...]struct{ name, v string }{
				{"request ID", e.Metadata.RequestID}, {"correlation ID", e.Metadata.CorrelationID}, {"causation ID", e.Metadata.CausationID},
			} {
				if !utf8.ValidString(f.v) {
					return fmt.Errorf("%w: stream %q event %s: metadata %s is not valid UTF-8", flux.ErrInvalidAppend, st.StreamID, e.EventName, f.name)
				}
				if n := utf8.RuneCountInString(f.v); n > maxColumnChars {
					return fmt.Errorf("%w: stream %q event %s: metadata %s is %d characters; the events table holds %d",
						flux.ErrInvalidAppend, st.StreamID, e.EventName, f.name, n, maxColumnChars)
				}
			}
		}
	}
	return nil
}

// checkName rejects names that do not fit a VARCHAR(255) key column.
func checkName(what, name string) error {
	if !utf8.ValidString(name) {
		return fmt.Errorf("mysqlstore: %s %q is not valid UTF-8", what, name)
	}
	if n := utf8.RuneCountInString(name); n > maxColumnChars {
		return fmt.Errorf("mysqlstore: %s is %d characters, longer than %d", what, n, maxColumnChars)
	}
	return nil
}

const insertColumns = `(id, event_id, aggregate_id, aggregate_type, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id, version)`

// chunk is a run of one stream's events written by one INSERT.
type chunk struct{ stream, from, to int }

// planChunks splits every stream's events into INSERTs that fit the
// statement budget (estimating escaping at its worst, every byte doubled)
// and maxRowsPerInsert. An event too large for any batch goes alone.
func (s *Store) planChunks(req *flux.AppendRequest) []chunk {
	var out []chunk
	for i := range req.Streams {
		st := &req.Streams[i]
		fixed := 2*(len(st.StreamID)+len(st.AggregateType)) + 200
		from, size := 0, 0
		for j := range st.Events {
			e := &st.Events[j]
			row := fixed + 2*(len(e.Payload)+len(e.EventName)+len(e.Metadata.RequestID)+len(e.Metadata.CorrelationID)+len(e.Metadata.CausationID))
			for k, v := range e.Metadata.Extra {
				row += 2*(len(k)+len(v)) + 8
			}
			if j > from && (size+row > s.stmtBudget || j-from >= maxRowsPerInsert) {
				out = append(out, chunk{i, from, j})
				from, size = j, 0
			}
			size += row
		}
		out = append(out, chunk{i, from, len(st.Events)})
	}
	return out
}

// Append implements flux.EventStore.
//
// The append runs in one transaction. Its first statement locks the log
// head row and moves it past the positions the append needs; then come
// the idempotency key, one read of the current versions of the streams
// expecting Any (or an exact version with more than 4 events), one
// multi-row INSERT per stream (more when a stream's events exceed the
// statement budget), the snapshots, and COMMIT. An exact expectation is
// checked by its INSERT ... SELECT, which inserts the first event only if
// the expected version exists. On a pool given to New that is START
// TRANSACTION, the head UPDATE, the INSERT and COMMIT: four round trips
// for the usual save of one aggregate. On the pools Open creates it is
// two: the head UPDATE, which also starts the transaction (autocommit=0),
// travels with the INSERT in one multi-statement round trip, then COMMIT.
//
// Errors: the validation errors of flux.ValidateAppend (and
// flux.ErrInvalidAppend for metadata IDs the table cannot hold) before
// any I/O; *flux.ConflictError when an expected version does not hold;
// *flux.IdempotencyError for a recorded idempotency key; the context's
// error; flux.ErrStoreUnavailable when the database cannot be reached or
// the connection broke, saying whether anything was written (a connection
// that breaks during COMMIT is followed by a check on a new connection).
// Deadlocks are retried (Options.DeadlockRetries).
func (s *Store) Append(ctx context.Context, req flux.AppendRequest) (flux.AppendResult, error) {
	if err := flux.ValidateAppend(&req, s.opts.MaxEventSize); err != nil {
		return flux.AppendResult{}, err
	}
	if err := checkColumns(&req); err != nil {
		return flux.AppendResult{}, err
	}
	if s.closed.Load() {
		return flux.AppendResult{}, flux.ErrStoreClosed
	}
	if err := ctx.Err(); err != nil {
		return flux.AppendResult{}, fmt.Errorf("mysqlstore: append: %w", err)
	}
	chunks := s.planChunks(&req)
	for attempt := 0; ; attempt++ {
		res, err := s.appendTx(ctx, &req, chunks)
		if err != nil && retryable(err) && attempt < s.opts.DeadlockRetries && ctx.Err() == nil {
			s.log.WarnContext(ctx, "mysqlstore: append was a deadlock victim; retrying", "attempt", attempt+1, "err", err)
			continue
		}
		if err != nil {
			return flux.AppendResult{}, s.writeError(ctx, "append", err)
		}
		s.appended.Signal()
		return res, nil
	}
}

func (s *Store) appendTx(ctx context.Context, req *flux.AppendRequest, chunks []chunk) (flux.AppendResult, error) {
	tx, err := s.beginAppend(ctx)
	if err != nil {
		return flux.AppendResult{}, err
	}
	defer tx.end()
	var res flux.AppendResult
	if s.batchable(req, chunks) {
		res, err = s.writeBatched(ctx, tx, req)
	} else {
		res, err = s.write(ctx, tx, req, chunks)
	}
	if err != nil {
		return res, err
	}
	if err := txhook.BeforeCommit(ctx); err != nil {
		return res, err
	}
	if err := tx.commit(ctx); err != nil {
		return res, s.commitFailed(ctx, req, err)
	}
	return res, nil
}

// write runs the statements of an append, one round trip each.
func (s *Store) write(ctx context.Context, tx *writeTx, req *flux.AppendRequest, chunks []chunk) (flux.AppendResult, error) {
	var res flux.AppendResult
	n := totalEvents(req)

	// Global log order. Positions are not AUTO_INCREMENT values: those are
	// handed out when a row is inserted, transactions commit in another
	// order, and a rollback leaves a hole, so a reader that resumes after
	// the highest position it saw would skip an event that commits later
	// with a lower one. Instead every append first locks the one row of
	// flux_log_head and moves it past the n positions it needs (LAST_INSERT_ID
	// hands the new value back in the same round trip). InnoDB releases
	// that row lock only when the transaction commits or rolls back, so:
	//   - appends run one after another: the next one reads the head only
	//     after this one has committed (then it continues where this one
	//     ended) or rolled back (then the head is back where it was, and
	//     the same positions are handed out again: no hole);
	//   - an append's positions are all higher than those of every append
	//     committed before it, and become visible together at its commit;
	//     a reader can therefore never see position p before a committed
	//     position below p.
	// The cost: appends are serialised from this statement to their
	// commit, so one append's round trips bound the throughput of all
	// writers together (BenchmarkAppendConcurrent4: about half the
	// throughput of four writers inserting with AUTO_INCREMENT). Other
	// transactions (reads, keys, checkpoints) never touch the row. Every
	// append takes the lock first, even one without events, so appends
	// never deadlock with each other.
	r, err := tx.ExecContext(ctx, `UPDATE flux_log_head SET position = LAST_INSERT_ID(position + ?) WHERE id = 1`, n)
	if err != nil {
		return res, err
	}
	var next int64 // the position of the append's first event
	if n > 0 {
		last, err := r.LastInsertId()
		if err != nil {
			return res, err
		}
		if affected, _ := r.RowsAffected(); affected != 1 || last < int64(n) {
			return res, errors.New("mysqlstore: append: the log head row is missing from flux_log_head; run Store.Migrate")
		}
		next = last - int64(n) + 1
		// Times follow the log: read the log's last time under the head
		// lock and stamp the events with it (flux.StampTimes).
		var prev time.Time
		if next > 1 {
			if err := tx.QueryRowContext(ctx, `SELECT occurred_on FROM events WHERE id = ?`, next-1).Scan(utcTime{&prev}); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return res, err
			}
		}
		res.OccurredAt = flux.StampTimes(req, prev)
	}

	if req.Idempotency != nil {
		if err := s.writeIdempotency(ctx, tx, req.Idempotency); err != nil {
			return res, err
		}
	}

	// An exact expectation of a stream with few events is checked by the
	// INSERT itself: its first row is only inserted if the stream has an
	// event at the expected version, so a missing row means the stream is
	// behind the expectation (the unique key rejects one that is ahead).
	// Other streams expecting a version have it read first.
	checkInInsert := make([]bool, len(req.Streams))
	for i := range req.Streams {
		st := &req.Streams[i]
		checkInInsert[i] = st.Expected > 0 && len(st.Events) <= maxRowsCheckedInInsert
	}
	// Appends are serialised on the head, so nothing can change the
	// versions until this transaction ends, and this read — the
	// transaction's first consistent read, made after the head lock — sees
	// every committed append. UNIQUE (aggregate_id, version) still rejects
	// any write that would duplicate a version, whoever makes it.
	current, err := s.currentVersions(ctx, tx, req.Streams, checkInInsert)
	if err != nil {
		return res, err
	}
	res.Versions = make([]int64, len(req.Streams))
	bases := make([]int64, len(req.Streams))
	for i := range req.Streams {
		st := &req.Streams[i]
		switch {
		case st.Expected == flux.Any:
			bases[i] = current[i]
		case st.Expected == flux.StreamExists:
			if current[i] == 0 {
				return res, &flux.ConflictError{StreamID: st.StreamID, Expected: st.Expected, Actual: 0}
			}
			bases[i] = current[i]
		case st.Expected > 0 && !checkInInsert[i]:
			// Also rejects an expectation beyond the stream's version,
			// which the unique key alone would let through with a gap.
			if actual := current[i]; actual != int64(st.Expected) {
				return res, &flux.ConflictError{StreamID: st.StreamID, Expected: st.Expected, Actual: actual}
			}
			bases[i] = int64(st.Expected)
		default:
			bases[i] = int64(st.Expected)
		}
		res.Versions[i] = bases[i] + int64(len(st.Events))
	}

	res.Positions = make([]int64, 0, n)
	var b strings.Builder
	args := make([]any, 0, 13*min(n, maxRowsPerInsert)+2)
	for _, c := range chunks {
		st := &req.Streams[c.stream]
		exists := c.from == 0 && checkInInsert[c.stream]
		b.Reset()
		args = insertStatement(&b, args[:0], st, c.from, c.to, bases[c.stream], exists, next, 0)
		for j := c.from; j < c.to; j++ {
			res.Positions = append(res.Positions, next)
			next++
		}
		r, err := tx.ExecContext(ctx, b.String(), args...)
		if err != nil {
			return res, s.insertError(ctx, tx, st, err)
		}
		if exists {
			if inserted, err := r.RowsAffected(); err != nil {
				return res, err
			} else if inserted != int64(c.to-c.from) {
				// The stream has no event at the expected version: it is
				// behind. The rows after the first went in (they roll back
				// with the transaction) and must not count as its version.
				return res, s.conflict(ctx, tx, st, int64(st.Expected))
			}
		}
	}

	for i := range req.Snapshots {
		if err := writeSnapshot(ctx, tx, &req.Snapshots[i]); err != nil {
			return res, err
		}
	}
	return res, nil
}

func totalEvents(req *flux.AppendRequest) int {
	n := 0
	for i := range req.Streams {
		n += len(req.Streams[i].Events)
	}
	return n
}

// insertStatement writes into b the INSERT of events [from, to) of st at
// stream versions base+1..., and returns args with its arguments. With
// exists, the first event is only inserted if the stream has an event at
// its expected version (INSERT ... SELECT ... WHERE EXISTS, one UNION ALL
// member per further event). Positions are explicit from first, or, when
// batchN > 0, computed by the server from the LAST_INSERT_ID() the head
// UPDATE of a batch of n = batchN events left.
func insertStatement(b *strings.Builder, args []any, st *flux.StreamAppend, from, to int, base int64, exists bool, first int64, batchN int) []any {
	row := "?,?,?,?,?,?,?,?,?,?,?,?"
	if batchN > 0 { // the log's last time is in @flux_prev (see writeBatched)
		row = "?,?,?,?,?,?,?,GREATEST(CAST(? AS DATETIME(6)), CAST(@flux_prev AS DATETIME(6))),?,?,?,?"
	}
	b.WriteString("INSERT INTO events ")
	b.WriteString(insertColumns)
	for j := from; j < to; j++ {
		switch {
		case exists && j == from:
			b.WriteString(" SELECT ")
		case exists:
			b.WriteString(" UNION ALL SELECT ")
		case j == from:
			b.WriteString(" VALUES (")
		default:
			b.WriteString(",(")
		}
		if batchN > 0 {
			fmt.Fprintf(b, "LAST_INSERT_ID()-%d,", batchN-1-j)
		} else {
			b.WriteString("?,")
			args = append(args, first+int64(j-from))
		}
		b.WriteString(row)
		if exists && j == from {
			b.WriteString(" FROM DUAL WHERE EXISTS (SELECT 1 FROM events WHERE aggregate_id = ? AND version = ?)")
		} else if !exists {
			b.WriteByte(')')
		}
		e := &st.Events[j]
		args = append(args, e.EventID, st.StreamID, st.AggregateType, e.EventName, int64(e.EventVersion),
			json.RawMessage(e.Payload), extraJSON(e.Metadata.Extra), formatTime(e.OccurredAt),
			requestID(e.Metadata.RequestID), e.Metadata.CorrelationID, e.Metadata.CausationID,
			base+int64(j)+1)
		if exists && j == from {
			args = append(args, st.StreamID, int64(st.Expected))
		}
	}
	return args
}

// batchable reports whether req can be written in one round trip (see
// writeBatched): a single stream expecting NoStream or an exact version,
// without idempotency key or snapshots, whose events fit well within one
// packet — the usual save of one aggregate.
func (s *Store) batchable(req *flux.AppendRequest, chunks []chunk) bool {
	if s.wdb == nil || len(req.Streams) != 1 || req.Idempotency != nil || len(req.Snapshots) > 0 || len(chunks) != 1 {
		return false
	}
	st := &req.Streams[0]
	if st.Expected < flux.NoStream { // Any, StreamExists
		return false
	}
	size := 0
	for i := range st.Events {
		size += 2*len(st.Events[i].Payload) + 1024
	}
	return size <= s.stmtBudget/2
}

// writeBatched writes a batchable append with one multi-statement round
// trip on an append connection (autocommit=0, multiStatements):
//
//	UPDATE flux_log_head SET position = LAST_INSERT_ID(position + n) WHERE id = 1;
//	INSERT INTO events (...) SELECT LAST_INSERT_ID()-(n-1), ... FROM DUAL
//		WHERE EXISTS (SELECT 1 FROM events WHERE aggregate_id = ? AND version = ?);
//	INSERT INTO events (...) VALUES (LAST_INSERT_ID()-(n-2), ...), ...
//
// The head UPDATE starts the transaction and takes the lock exactly as in
// write; the INSERTs run after it, on the same connection, and compute
// their positions from the head it left. An exact expectation is checked
// by the first event's INSERT, as in write (the rest follow as one VALUES
// list); NoStream needs one INSERT. The server stops at the first failing
// statement and the driver reports each statement's result, so errors
// and the check are read as in write.
func (s *Store) writeBatched(ctx context.Context, tx *writeTx, req *flux.AppendRequest) (flux.AppendResult, error) {
	st := &req.Streams[0]
	n := len(st.Events)
	base := int64(st.Expected)
	exact := st.Expected > 0
	var b strings.Builder
	fmt.Fprintf(&b, "UPDATE flux_log_head SET position = LAST_INSERT_ID(position + %d) WHERE id = 1;", n)
	// Times follow the log: the INSERTs store the later of each event's
	// time and the log's last time, read here under the head lock.
	fmt.Fprintf(&b, "SET @flux_prev = IFNULL((SELECT occurred_on FROM events WHERE id = LAST_INSERT_ID() - %d), '1000-01-01');", n)
	args := make([]any, 0, 13*n+2)
	want := []int64{1, 0, int64(n)} // rows affected by each statement
	if exact {
		args = insertStatement(&b, args, st, 0, 1, base, true, 0, n)
		want[2] = 1
		if n > 1 {
			b.WriteByte(';')
			args = insertStatement(&b, args, st, 1, n, base, false, 0, n)
			want = append(want, int64(n-1))
		}
	} else {
		args = insertStatement(&b, args, st, 0, n, base, false, 0, n)
	}
	// Hand the log's last time back in this round trip: an UPDATE that
	// changes nothing reports LAST_INSERT_ID(expr) as its insert ID (SET
	// and DO do not), here the time in microseconds since 1970 (0 for an
	// empty log). Its affected-rows count is not checked.
	b.WriteString(";UPDATE flux_log_head SET position = position + 0 * LAST_INSERT_ID(GREATEST(0, TIMESTAMPDIFF(MICROSECOND, '1970-01-01', CAST(@flux_prev AS DATETIME(6))))) WHERE id = 1")
	want = append(want, -1)
	named := make([]driver.NamedValue, len(args))
	for i, a := range args {
		named[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	var affected, ids []int64
	err := tx.conn.Raw(func(dc any) error {
		ex, ok := dc.(driver.ExecerContext)
		if !ok {
			return fmt.Errorf("mysqlstore: driver connection %T cannot execute statements", dc)
		}
		r, err := ex.ExecContext(ctx, b.String(), named)
		if err != nil {
			return err
		}
		mr, ok := r.(mysql.Result)
		if !ok {
			return fmt.Errorf("mysqlstore: driver result %T does not report per statement", r)
		}
		affected, ids = mr.AllRowsAffected(), mr.AllLastInsertIds()
		return nil
	})
	if err != nil {
		if mysqlErrno(err) == erDupEntry {
			return flux.AppendResult{}, s.insertError(ctx, tx, st, err)
		}
		return flux.AppendResult{}, err
	}
	if len(affected) != len(want) || affected[0] != 1 || ids[0] < int64(n) {
		return flux.AppendResult{}, errors.New("mysqlstore: append: the log head row is missing from flux_log_head; run Store.Migrate")
	}
	if affected[2] != want[2] { // the stream has no event at the expected version
		return flux.AppendResult{}, s.conflict(ctx, tx, st, base)
	}
	var prev time.Time
	if us := ids[len(ids)-1]; us > 0 {
		prev = time.UnixMicro(us).UTC()
	}
	res := flux.AppendResult{Positions: make([]int64, n), Versions: []int64{base + int64(n)}, OccurredAt: flux.StampTimes(req, prev)}
	for i := range res.Positions {
		res.Positions[i] = ids[0] - int64(n) + 1 + int64(i)
	}
	return res, nil
}

// currentVersions reads the versions of the streams expecting Any, or an
// exact version not checked by the INSERT (see appendTx), in one query.
// Streams expecting NoStream are left to the unique key. Each stream's
// MAX(version) is its own scalar subquery, which the optimiser answers with
// one dive into unique_aggregate_version; a GROUP BY over an IN list would
// scan every index entry of the streams.
func (s *Store) currentVersions(ctx context.Context, tx querier, streams []flux.StreamAppend, checkedInInsert []bool) (map[int]int64, error) {
	var b strings.Builder
	var args []any
	for i := range streams {
		if streams[i].Expected == flux.NoStream || checkedInInsert[i] {
			continue
		}
		if len(args) > 0 {
			b.WriteString(" UNION ALL ")
		}
		fmt.Fprintf(&b, "SELECT %d, (SELECT MAX(version) FROM events WHERE aggregate_id = ?)", i)
		args = append(args, streams[i].StreamID)
	}
	if len(args) == 0 {
		return nil, nil
	}
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[int]int64, len(args))
	for rows.Next() {
		var i int
		var v sql.NullInt64
		if err := rows.Scan(&i, &v); err != nil {
			return nil, err
		}
		out[i] = v.Int64
	}
	return out, rows.Err()
}

// insertError interprets a failed INSERT INTO events: a duplicate
// (stream, version) is a lost race, reported with the version read in the
// still-open transaction.
func (s *Store) insertError(ctx context.Context, tx querier, st *flux.StreamAppend, err error) error {
	if mysqlErrno(err) != erDupEntry {
		return err
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unique_aggregate_version"):
		return s.conflict(ctx, tx, st, -1)
	case strings.Contains(msg, "unique_event_id"):
		return fmt.Errorf("%w: stream %q: an event ID of this append is already stored (%s); event IDs must be unique", flux.ErrInvalidAppend, st.StreamID, duplicateEntry(msg))
	case strings.Contains(msg, "PRIMARY"):
		return fmt.Errorf("mysqlstore: append to stream %q: position %s is already taken: a program inserted into events without going through flux_log_head (the PHP library?); every writer must append through flux: %w",
			st.StreamID, duplicateEntry(msg), err)
	}
	return err
}

// conflict builds the ConflictError for st, reading the stream's actual
// version in the still-open transaction, among versions up to upTo when
// it is not negative (to skip rows this transaction wrote).
func (s *Store) conflict(ctx context.Context, tx querier, st *flux.StreamAppend, upTo int64) error {
	query, args := `SELECT COALESCE(MAX(version), 0) FROM events WHERE aggregate_id = ?`, []any{st.StreamID}
	if upTo >= 0 {
		query += ` AND version <= ?`
		args = append(args, upTo)
	}
	actual := int64(-1)
	if err := tx.QueryRowContext(ctx, query, args...).Scan(&actual); err != nil {
		actual = -1
	}
	return &flux.ConflictError{StreamID: st.StreamID, Expected: st.Expected, Actual: actual}
}

// duplicateEntry extracts the value from "Duplicate entry 'x' for key 'k'".
func duplicateEntry(msg string) string {
	if i := strings.Index(msg, "Duplicate entry '"); i >= 0 {
		rest := msg[i+len("Duplicate entry '"):]
		if j := strings.LastIndex(rest, "' for key"); j >= 0 {
			return rest[:j]
		}
	}
	return "?"
}

// commitFailed interprets an error from COMMIT. If the COMMIT never
// reached the server (driver.ErrBadConn) or the server refused it, the
// transaction was rolled back. If the connection broke after it was sent,
// the server may have committed: commitFailed asks the database, on a new
// connection, whether the append's first event (or idempotency key) is
// there, after waiting on the log head for the orphaned transaction to
// finish. Only when the database cannot be asked is the outcome reported
// as unknown.
func (s *Store) commitFailed(ctx context.Context, req *flux.AppendRequest, err error) error {
	if !isConnLoss(err) || errors.Is(err, driver.ErrBadConn) || isDialFailure(err) {
		return err
	}
	committed, known := s.checkCommitted(ctx, req)
	switch {
	case known && committed:
		s.log.WarnContext(ctx, "mysqlstore: the connection broke during COMMIT, but the append was committed", "err", err)
		return nil
	case known:
		return fmt.Errorf("%w: mysqlstore: append: the connection to the database was lost while committing; the transaction was rolled back and nothing was written; retry: %w", errUnavailable, err)
	}
	what := "the append's snapshots"
	if len(req.Streams) > 0 {
		what = fmt.Sprintf("event %s (stream %q)", req.Streams[0].Events[0].EventID, req.Streams[0].StreamID)
	} else if req.Idempotency != nil {
		what = fmt.Sprintf("idempotency key %q", req.Idempotency.Key)
	}
	return fmt.Errorf("%w: mysqlstore: append: the connection to the database was lost while committing and the database could not be asked whether the append was written; before retrying, check whether %s exists: %w",
		errUnavailable, what, err)
}

func (s *Store) checkCommitted(ctx context.Context, req *flux.AppendRequest) (committed, known bool) {
	if len(req.Streams) == 0 && req.Idempotency == nil {
		return false, false
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitCheckTimeout)
	defer cancel()
	tx, err := s.db.BeginTx(cctx, nil)
	if err != nil {
		return false, false
	}
	defer tx.Rollback()
	// The orphaned transaction holds the head until the server has
	// committed it or, having noticed the lost client, rolled it back.
	var head int64
	if err := tx.QueryRowContext(cctx, `SELECT position FROM flux_log_head WHERE id = 1 FOR UPDATE`).Scan(&head); err != nil {
		return false, false
	}
	var found int
	if len(req.Streams) > 0 {
		err = tx.QueryRowContext(cctx, `SELECT COUNT(*) FROM events WHERE event_id = ?`, req.Streams[0].Events[0].EventID).Scan(&found)
	} else {
		err = tx.QueryRowContext(cctx, `SELECT COUNT(*) FROM idempotency_keys WHERE idempotency_key = ? AND created_at = ?`,
			req.Idempotency.Key, formatTime(req.Idempotency.CreatedAt)).Scan(&found)
	}
	if err != nil {
		return false, false
	}
	s.log.InfoContext(ctx, "mysqlstore: checked the outcome of an append whose COMMIT lost its connection", "committed", found > 0)
	return found > 0, true
}

func requestID(id string) string {
	if id == "" {
		return flux.DefaultRequestID
	}
	return id
}

// extraJSON encodes free-form metadata; nil (NULL) when there is none, so
// the common case stores NULL and reads skip JSON decoding.
func extraJSON(extra map[string]string) any {
	if len(extra) == 0 {
		return nil
	}
	b, err := json.Marshal(extra)
	if err != nil { // map[string]string always marshals
		return nil
	}
	return json.RawMessage(b)
}

const selectColumns = `SELECT id, aggregate_id, version, aggregate_type, event_id, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id FROM events`

// ReadStream implements flux.EventStore. Records are streamed from one
// query; break out of the loop to stop (the driver then reads and drops
// the rest of the result). Errors: flux.ErrStoreClosed, the context's
// error, flux.ErrStoreUnavailable, flux.ErrCorruptEvent for a row that
// cannot be decoded.
func (s *Store) ReadStream(ctx context.Context, streamID string, opts flux.ReadStreamOptions) iter.Seq2[flux.Record, error] {
	var b strings.Builder
	b.WriteString(selectColumns)
	b.WriteString(" WHERE aggregate_id = ?")
	args := []any{streamID}
	if opts.FromVersion > 1 {
		b.WriteString(" AND version >= ?")
		args = append(args, opts.FromVersion)
	}
	if opts.ToVersion > 0 {
		b.WriteString(" AND version <= ?")
		args = append(args, opts.ToVersion)
	}
	args = timeAndNames(&b, args, opts.Since, opts.Until, "event_name", opts.EventNames)
	b.WriteString(" ORDER BY version")
	return s.query(ctx, "read stream "+quote(streamID), b.String(), args)
}

// ReadAll implements flux.EventStore: the global log in position order,
// which is commit order (see Append). Streaming and errors as ReadStream.
func (s *Store) ReadAll(ctx context.Context, opts flux.ReadAllOptions) iter.Seq2[flux.Record, error] {
	var b strings.Builder
	b.WriteString(selectColumns)
	b.WriteString(" WHERE id > ?")
	args := []any{opts.After}
	args = timeAndNames(&b, args, opts.Since, opts.Until, "event_name", opts.EventNames)
	args = in(&b, args, "aggregate_type", opts.AggregateTypes)
	if opts.CorrelationID != "" {
		b.WriteString(" AND correlation_id = ?")
		args = append(args, opts.CorrelationID)
	}
	if opts.RequestID != "" {
		b.WriteString(" AND request_id = ?")
		args = append(args, opts.RequestID)
	}
	b.WriteString(" ORDER BY id")
	if opts.Limit > 0 {
		b.WriteString(" LIMIT ?")
		args = append(args, opts.Limit)
	}
	return s.query(ctx, "read all", b.String(), args)
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}

func timeAndNames(b *strings.Builder, args []any, since, until time.Time, col string, names []string) []any {
	if !since.IsZero() {
		b.WriteString(" AND occurred_on >= ?")
		args = append(args, formatTime(since))
	}
	if !until.IsZero() {
		b.WriteString(" AND occurred_on <= ?")
		args = append(args, formatTime(until))
	}
	return in(b, args, col, names)
}

func in(b *strings.Builder, args []any, col string, values []string) []any {
	if len(values) == 0 {
		return args
	}
	b.WriteString(" AND " + col + " IN (")
	for i, v := range values {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('?')
		args = append(args, v)
	}
	b.WriteByte(')')
	return args
}

func (s *Store) query(ctx context.Context, op, query string, args []any) iter.Seq2[flux.Record, error] {
	return func(yield func(flux.Record, error) bool) {
		if s.closed.Load() {
			yield(flux.Record{}, flux.ErrStoreClosed)
			return
		}
		rows, err := s.db.QueryContext(ctx, query, args...)
		if err != nil {
			yield(flux.Record{}, s.readError(ctx, op, err))
			return
		}
		defer rows.Close()
		var sc recordScanner
		dest := sc.dest()
		for rows.Next() {
			if err := rows.Scan(dest...); err != nil {
				if ctx.Err() != nil || s.closed.Load() { // the rows were closed under us
					yield(flux.Record{}, s.readError(ctx, op, err))
					return
				}
				yield(flux.Record{}, fmt.Errorf("%w: mysqlstore: %s: position %s: %v", flux.ErrCorruptEvent, op, sc.col(colID), err))
				return
			}
			rec, err := sc.record()
			if err != nil {
				yield(flux.Record{}, err)
				return
			}
			if !yield(rec, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(flux.Record{}, s.readError(ctx, op, err))
		}
	}
}

// recordScanner holds the scan destinations of one query, reused for
// every row. Columns arrive as raw bytes: integers are parsed in place and
// strings that repeat from row to row (stream ID, aggregate type, event
// name, request, correlation and causation IDs) reuse the previous row's
// string, so a long stream costs few allocations beyond its payloads.
type recordScanner struct {
	raw      [12]sql.RawBytes
	occurred time.Time
	prev     [6]string // interned strings, by internIndex
	dst      []any
}

// Column order of selectColumns.
const (
	colID = iota
	colStream
	colVersion
	colType
	colEventID
	colName
	colEventVersion
	colPayload
	colMetadata
	colOccurred
	colRequest
	colCorrelation
	colCausation
)

func (sc *recordScanner) dest() []any {
	sc.dst = make([]any, 0, 13)
	for i := 0; i < 13; i++ {
		switch {
		case i == colOccurred:
			sc.dst = append(sc.dst, utcTime{&sc.occurred})
		case i > colOccurred:
			sc.dst = append(sc.dst, &sc.raw[i-1])
		default:
			sc.dst = append(sc.dst, &sc.raw[i])
		}
	}
	return sc.dst
}

// col returns the raw bytes of column c (selectColumns order).
func (sc *recordScanner) col(c int) sql.RawBytes {
	if c > colOccurred {
		return sc.raw[c-1]
	}
	return sc.raw[c]
}

// intern returns the column as a string, reusing the previous row's
// string in slot when the bytes are equal.
func (sc *recordScanner) intern(slot, c int) string {
	b := sc.col(c)
	if string(b) == sc.prev[slot] {
		return sc.prev[slot]
	}
	sc.prev[slot] = string(b)
	return sc.prev[slot]
}

func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) >= 19 {
		// Near the limits of int64: let strconv catch an overflow.
		if b[0] == '+' {
			return 0, false
		}
		n, err := strconv.ParseInt(string(b), 10, 64)
		return n, err == nil
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// record decodes the scanned row.
func (sc *recordScanner) record() (flux.Record, error) {
	var r flux.Record
	var ok1, ok2, ok3 bool
	r.Position, ok1 = parseInt(sc.col(colID))
	r.StreamVersion, ok2 = parseInt(sc.col(colVersion))
	ev, ok3 := parseInt(sc.col(colEventVersion))
	r.StreamID = sc.intern(0, colStream)
	if !(ok1 && ok2 && ok3) {
		return r, fmt.Errorf("%w: mysqlstore: stream %q: row with position %q, version %q, event version %q",
			flux.ErrCorruptEvent, r.StreamID, sc.col(colID), sc.col(colVersion), sc.col(colEventVersion))
	}
	r.EventVersion = int(ev)
	r.AggregateType = sc.intern(1, colType)
	r.EventID = string(sc.col(colEventID))
	r.EventName = sc.intern(2, colName)
	r.Payload = append([]byte(nil), sc.col(colPayload)...)
	r.OccurredAt = sc.occurred
	r.Metadata.RequestID = sc.intern(3, colRequest)
	r.Metadata.CorrelationID = sc.intern(4, colCorrelation)
	r.Metadata.CausationID = sc.intern(5, colCausation)
	if md := sc.col(colMetadata); len(md) > 0 {
		if err := json.Unmarshal(md, &r.Metadata.Extra); err != nil {
			return r, fmt.Errorf("%w: mysqlstore: stream %q version %d: metadata is not a JSON object of strings", flux.ErrCorruptEvent, r.StreamID, r.StreamVersion)
		}
	}
	return r, nil
}
