// Package sqlitestore is the embedded default flux.EventStore: one SQLite
// file, opened through the pure-Go driver modernc.org/sqlite (no cgo).
//
// # Concurrency
//
// The database runs in WAL mode, so reads never wait for writes. All writes
// go through one dedicated connection and open with BEGIN IMMEDIATE: the
// goroutines of one process queue in Go (honouring their contexts) instead
// of meeting SQLITE_BUSY, and another process writing to the same file is
// waited for up to Options.BusyTimeout.
//
// # Global log order
//
// Positions are the table's INTEGER PRIMARY KEY, assigned inside the write
// transaction. SQLite admits one writer at a time, so positions are handed
// out in commit order and a rolled-back append leaves no hole: a reader
// that resumes after the last position it saw never skips an event.
//
// # Optimistic concurrency
//
// UNIQUE (aggregate_id, version) decides every race. An exact expected
// version is checked in the INSERT itself (the row is only inserted when
// version = expected exists), so neither a stale writer nor one that
// expects a version the stream has not reached can write.
//
// # Storage
//
// JSON (payloads, metadata, snapshot data, idempotency results) is stored
// as TEXT, byte for byte as written, so the sqlite3 shell's .dump shows it
// as text and json_extract reads it, as with PostgreSQL and MariaDB.
// Migrate converts the BLOBs that versions before schema 3 stored; see
// Store.Migrated for what it did.
package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/txhook"
	"github.com/fluxcapacitor/flux/wake"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Options configure a Store. Nil or the zero value gives the defaults.
type Options struct {
	// MaxEventSize limits one encoded payload in bytes. Default:
	// flux.DefaultMaxEventSize (4 MiB).
	MaxEventSize int
	// BusyTimeout is how long a write waits for another process holding
	// the database's write lock. Default: 5s.
	BusyTimeout time.Duration
	// ReadConns is the number of read connections. Default: 4.
	ReadConns int
	// Synchronous is SQLite's synchronous setting: "NORMAL" (default; in WAL
	// mode a process crash loses nothing, a power cut may lose the last
	// commits but never corrupts) or "FULL" (every commit is fsynced).
	Synchronous string
	// ReadOnly opens the database for reading only: nothing is written to
	// the file (no schema is created or upgraded, every write fails). A
	// file the process may not write is opened as immutable, so no other
	// process may change it meanwhile (SQLite then skips locking). A database
	// whose schema is missing or older than this build fails Open with an
	// error that says to migrate it. For tools that inspect a store.
	ReadOnly bool
}

func (o *Options) withDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.MaxEventSize <= 0 {
		c.MaxEventSize = flux.DefaultMaxEventSize
	}
	if c.BusyTimeout <= 0 {
		c.BusyTimeout = 5 * time.Second
	}
	if c.ReadConns <= 0 {
		c.ReadConns = 4
	}
	if c.Synchronous == "" {
		c.Synchronous = "NORMAL"
	}
	return c
}

func (o Options) validate() error {
	var errs []error
	switch strings.ToUpper(o.Synchronous) {
	case "NORMAL", "FULL", "EXTRA":
	default:
		errs = append(errs, fmt.Errorf("sqlitestore: Options.Synchronous %q: want NORMAL, FULL or EXTRA", o.Synchronous))
	}
	return errors.Join(errs...)
}

// Store is a flux.EventStore in one SQLite file. It is safe for concurrent
// use by many goroutines.
type Store struct {
	path string
	opts Options
	wdb  *sql.DB // one connection: every write transaction
	rdb  *sql.DB // read-only connections

	appended wake.Broadcaster // signalled after every committed append

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt // prepared read queries, by SQL text
	wstmts map[string]*sql.Stmt // prepared write statements (on the one write connection)

	migMu    sync.Mutex
	migRan   bool
	migrated Migration

	closeOnce sync.Once
	closed    atomic.Bool
}

// maxCachedStmts bounds the prepared-statement cache: read queries have a
// handful of shapes, but IN lists of varying length could make many.
const maxCachedStmts = 64

var _ flux.EventStore = (*Store)(nil)

// Open opens (creating if needed) the SQLite database at path and brings
// its schema up to date. opts may be nil.
func Open(ctx context.Context, path string, opts *Options) (*Store, error) {
	o := opts.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errors.New("sqlitestore: path is empty; give a file name such as flux.db")
	}
	if dir := filepath.Dir(path); dir != "" {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%w: sqlitestore: directory %s of %s does not exist; create it first", flux.ErrStoreUnavailable, dir, path)
		}
	}
	if o.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("sqlitestore: open %s read-only: %w", path, err)
		}
	}
	wdb, err := sql.Open("sqlite", dsn(path, o, false))
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	s := &Store{path: path, opts: o, wdb: wdb}
	if o.ReadOnly {
		err = s.checkSchema(ctx)
	} else {
		err = s.Migrate(ctx)
	}
	if err != nil {
		wdb.Close()
		return nil, err
	}
	rdb, err := sql.Open("sqlite", dsn(path, o, true))
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("sqlitestore: open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(o.ReadConns)
	rdb.SetMaxIdleConns(o.ReadConns)
	rdb.SetConnMaxIdleTime(0)
	s.rdb = rdb
	return s, nil
}

// ErrNotMigrated is returned by Open with Options.ReadOnly for a database
// whose schema is missing or older than this build's.
var ErrNotMigrated = errors.New("sqlitestore: the event store schema is missing or out of date")

// checkSchema fails unless the schema is current (read-only opens).
func (s *Store) checkSchema(ctx context.Context) error {
	var current int
	if err := s.wdb.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return interpretError(fmt.Errorf("sqlitestore: open %s read-only: read schema version: %w", s.path, err))
	}
	switch {
	case current > len(migrations):
		return fmt.Errorf("sqlitestore: %s has schema version %d, newer than this build knows (%d); upgrade FluxCapacitor", s.path, current, len(migrations))
	case current == 0:
		return fmt.Errorf("%w: %s holds no event store (schema version 0); migrate it first", ErrNotMigrated, s.path)
	case current < len(migrations):
		return fmt.Errorf("%w: %s has schema version %d, this build needs %d; migrate it first", ErrNotMigrated, s.path, current, len(migrations))
	}
	s.recordMigration(current, Migration{})
	return nil
}

// writable reports whether the process may open path for writing.
func writable(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func dsn(path string, o Options, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(o.BusyTimeout.Milliseconds(), 10)+")")
	if o.ReadOnly {
		q.Set("mode", "ro")
		if !writable(path) {
			q.Set("immutable", "1")
		}
		q.Add("_pragma", "query_only(ON)")
		return "file:" + path + "?" + q.Encode()
	}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+strings.ToUpper(o.Synchronous)+")")
	q.Add("_pragma", "foreign_keys(ON)")
	if readOnly {
		q.Add("_pragma", "query_only(ON)")
	} else {
		q.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode()
}

// DB returns a read-only pool on the database, for read models that live
// beside the events (see ProjectTx). Do not close it.
func (s *Store) DB() *sql.DB { return s.rdb }

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Migration reports what Migrate did.
type Migration struct {
	// From and To are the schema versions (PRAGMA user_version) before the
	// first Migrate of this Store, usually the one Open runs, and after the
	// last. They are equal when the schema was already current.
	From, To int
	// Converted counts the JSON values rewritten from BLOB to TEXT, by
	// "table.column" (schema version 3; see the package documentation).
	Converted map[string]int64
}

// Migrated reports the schema steps this Store applied: those Open ran and
// those of any later Migrate call.
func (s *Store) Migrated() Migration {
	s.migMu.Lock()
	defer s.migMu.Unlock()
	m := s.migrated
	if m.Converted != nil {
		m.Converted = maps.Clone(m.Converted)
	}
	return m
}

// Migrate brings the schema up to date, in one transaction: a failure
// leaves the database as it was. Open calls it; calling it again is
// harmless. A database written by a version before schema 3 has its JSON
// stored as BLOBs converted to TEXT, which rewrites those rows once.
func (s *Store) Migrate(ctx context.Context) error {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return interpretError(fmt.Errorf("sqlitestore: migrate %s: %w", s.path, err))
	}
	defer tx.Rollback()
	var current int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
		return interpretError(fmt.Errorf("sqlitestore: migrate %s: read schema version: %w", s.path, err))
	}
	if current > len(migrations) {
		return fmt.Errorf("sqlitestore: %s has schema version %d, newer than this build knows (%d); upgrade FluxCapacitor", s.path, current, len(migrations))
	}
	var m Migration
	for i := current; i < len(migrations); i++ {
		step := migrations[i]
		if step.apply != nil {
			err = step.apply(ctx, tx, &m)
		} else {
			_, err = tx.ExecContext(ctx, step.script)
		}
		if err != nil {
			return interpretError(fmt.Errorf("sqlitestore: migrate %s from version %d to %d: %w; the database is unchanged", s.path, current, i+1, err))
		}
	}
	if current == len(migrations) {
		s.recordMigration(current, m)
		return nil
	}
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(len(migrations))); err != nil {
		return interpretError(fmt.Errorf("sqlitestore: migrate %s: %w", s.path, err))
	}
	if err := tx.Commit(); err != nil {
		return interpretError(fmt.Errorf("sqlitestore: migrate %s from version %d to %d: %w; the database is unchanged", s.path, current, len(migrations), err))
	}
	s.recordMigration(current, m)
	return nil
}

func (s *Store) recordMigration(from int, m Migration) {
	s.migMu.Lock()
	defer s.migMu.Unlock()
	if !s.migRan {
		s.migRan = true
		s.migrated.From = from
	}
	s.migrated.To = len(migrations)
	for k, n := range m.Converted {
		if s.migrated.Converted == nil {
			s.migrated.Converted = make(map[string]int64)
		}
		s.migrated.Converted[k] += n
	}
}

// Close closes the database. It is idempotent.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		err = errors.Join(s.wdb.Close(), closeIfSet(s.rdb))
	})
	return err
}

func closeIfSet(db *sql.DB) error {
	if db == nil {
		return nil
	}
	return db.Close()
}

const timeLayout = "2006-01-02T15:04:05.000000Z"

func formatTime(t time.Time) string { return flux.NormalizeTime(t).Format(timeLayout) }

// parseTime parses exactly the fixed-width layout formatTime writes; any
// other spelling is damage, not an alternative format.
func parseTime(s string) (time.Time, error) {
	const layoutLen = len(timeLayout)
	bad := func() (time.Time, error) {
		return time.Time{}, fmt.Errorf("occurred_on %q is not in the form %s", s, timeLayout)
	}
	if len(s) != layoutLen {
		return bad()
	}
	num := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	if s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' || s[26] != 'Z' {
		return bad()
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 7)
	day, ok3 := num(8, 10)
	hour, ok4 := num(11, 13)
	minute, ok5 := num(14, 16)
	sec, ok6 := num(17, 19)
	micro, ok7 := num(20, 26)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 59 {
		return bad()
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, micro*1000, time.UTC)
	if t.Day() != day { // 31 February and friends
		return bad()
	}
	return t, nil
}

// insertChunk bounds the rows of one INSERT (13 parameters each) well
// below SQLite's 32766-parameter limit.
const insertChunk = 400

const insertColumns = `(event_id, aggregate_id, aggregate_type, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id, version)`

// Append implements flux.EventStore.
func (s *Store) Append(ctx context.Context, req flux.AppendRequest) (flux.AppendResult, error) {
	if err := flux.ValidateAppend(&req, s.opts.MaxEventSize); err != nil {
		return flux.AppendResult{}, err
	}
	if s.closed.Load() {
		return flux.AppendResult{}, flux.ErrStoreClosed
	}
	if err := ctx.Err(); err != nil {
		return flux.AppendResult{}, err
	}
	// Prepare (or find) the INSERT statements first: preparing needs the
	// one write connection, which the transaction below holds.
	stmts := make(map[string]*sql.Stmt)
	for i := range req.Streams {
		st := &req.Streams[i]
		for from := 0; from < len(st.Events); from += insertChunk {
			q := insertQuery(min(from+insertChunk, len(st.Events))-from, from == 0 && st.Expected > 0)
			if _, ok := stmts[q]; !ok {
				stmt, err := s.writeStmt(ctx, q)
				if err != nil {
					return flux.AppendResult{}, s.appendError(ctx, err)
				}
				stmts[q] = stmt
			}
		}
	}
	tx, err := s.wdb.BeginTx(ctx, nil) // BEGIN IMMEDIATE (see dsn)
	if err != nil {
		return flux.AppendResult{}, s.appendError(ctx, err)
	}
	defer tx.Rollback()

	if req.Idempotency != nil {
		if err := s.writeIdempotency(ctx, tx, req.Idempotency); err != nil {
			return flux.AppendResult{}, err
		}
	}
	res := flux.AppendResult{Versions: make([]int64, len(req.Streams))}
	if len(req.Streams) > 0 {
		// The transaction holds the write lock: stamp times in log order.
		prev, err := s.lastTime(ctx, tx)
		if err != nil {
			return flux.AppendResult{}, s.appendError(ctx, err)
		}
		res.OccurredAt = flux.StampTimes(&req, prev)
	}
	for i := range req.Streams {
		st := &req.Streams[i]
		base := int64(st.Expected)
		if st.Expected == flux.Any || st.Expected == flux.StreamExists {
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM events WHERE aggregate_id = ?`, st.StreamID).Scan(&base); err != nil {
				return flux.AppendResult{}, s.appendError(ctx, err)
			}
			if st.Expected == flux.StreamExists && base == 0 {
				return flux.AppendResult{}, &flux.ConflictError{StreamID: st.StreamID, Expected: st.Expected, Actual: 0}
			}
		}
		for from := 0; from < len(st.Events); from += insertChunk {
			to := min(from+insertChunk, len(st.Events))
			// Only the first chunk of an exact expectation checks that the
			// stream is at that version; the unique constraint covers the rest.
			checkExact := from == 0 && st.Expected > 0
			args := insertArgs(st, from, to, base, checkExact)
			r, err := tx.StmtContext(ctx, stmts[insertQuery(to-from, checkExact)]).ExecContext(ctx, args...)
			if err != nil {
				if isUniqueViolation(err) && strings.Contains(err.Error(), "version") {
					return flux.AppendResult{}, s.conflict(ctx, tx, st)
				}
				return flux.AppendResult{}, s.appendError(ctx, err)
			}
			n, err := r.RowsAffected()
			if err != nil {
				return flux.AppendResult{}, s.appendError(ctx, err)
			}
			if n != int64(to-from) { // the exact-version check found no such version
				return flux.AppendResult{}, s.conflict(ctx, tx, st)
			}
			last, err := r.LastInsertId()
			if err != nil {
				return flux.AppendResult{}, s.appendError(ctx, err)
			}
			// One writer at a time: the rows got consecutive rowids.
			for p := last - n + 1; p <= last; p++ {
				res.Positions = append(res.Positions, p)
			}
		}
		res.Versions[i] = base + int64(len(st.Events))
	}
	for i := range req.Snapshots {
		if err := s.writeSnapshot(ctx, tx, &req.Snapshots[i]); err != nil {
			return flux.AppendResult{}, err
		}
	}
	if err := txhook.BeforeCommit(ctx); err != nil {
		return flux.AppendResult{}, err
	}
	if err := tx.Commit(); err != nil {
		return flux.AppendResult{}, s.appendError(ctx, err)
	}
	s.appended.Signal()
	return res, nil
}

// lastTime reads the time of the log's last event (zero when it is empty).
func (s *Store) lastTime(ctx context.Context, tx *sql.Tx) (time.Time, error) {
	var last string
	switch err := tx.QueryRowContext(ctx, `SELECT occurred_on FROM events ORDER BY id DESC LIMIT 1`).Scan(&last); {
	case errors.Is(err, sql.ErrNoRows):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, err
	}
	t, err := parseTime(last)
	if err != nil {
		return time.Time{}, fmt.Errorf("sqlitestore: the log's last event: %w", err)
	}
	return t, nil
}

// insertQuery is the INSERT of n events; with checkExact it inserts only
// when the stream is at the expected version (its last two arguments).
func insertQuery(n int, checkExact bool) string {
	var b strings.Builder
	b.WriteString("INSERT INTO events ")
	b.WriteString(insertColumns)
	if checkExact {
		b.WriteString(" SELECT * FROM (VALUES ")
	} else {
		b.WriteString(" VALUES ")
	}
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	if checkExact {
		b.WriteString(") WHERE EXISTS (SELECT 1 FROM events WHERE aggregate_id = ? AND version = ?)")
	}
	return b.String()
}

// insertArgs are the arguments of insertQuery for events [from, to).
func insertArgs(st *flux.StreamAppend, from, to int, base int64, checkExact bool) []any {
	args := make([]any, 0, (to-from)*12+2)
	for i := from; i < to; i++ {
		e := &st.Events[i]
		args = append(args, e.EventID, st.StreamID, st.AggregateType, e.EventName, e.EventVersion,
			text(e.Payload), extraJSON(e.Metadata.Extra), formatTime(e.OccurredAt),
			requestID(e.Metadata.RequestID), e.Metadata.CorrelationID, e.Metadata.CausationID,
			base+int64(i)+1)
	}
	if checkExact {
		args = append(args, st.StreamID, base)
	}
	return args
}

func requestID(id string) string {
	if id == "" {
		return flux.DefaultRequestID
	}
	return id
}

// extraJSON encodes free-form metadata; nil when there is none, so the
// common case stores NULL and reads skip JSON decoding.
func extraJSON(extra map[string]string) any {
	if len(extra) == 0 {
		return nil
	}
	b, err := json.Marshal(extra)
	if err != nil { // map[string]string always marshals
		return nil
	}
	return text(b)
}

// conflict builds the ConflictError for st, reading the stream's actual
// version inside the still-open transaction.
func (s *Store) conflict(ctx context.Context, tx *sql.Tx, st *flux.StreamAppend) error {
	actual := int64(-1)
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM events WHERE aggregate_id = ?`, st.StreamID).Scan(&actual); err != nil {
		actual = -1
	}
	return &flux.ConflictError{StreamID: st.StreamID, Expected: st.Expected, Actual: actual}
}

func (s *Store) appendError(ctx context.Context, err error) error {
	if s.closed.Load() {
		return flux.ErrStoreClosed
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("sqlitestore: append: %w", ctxErr)
	}
	return interpretError(fmt.Errorf("sqlitestore: append: %w", err))
}

// interpretError is the one place that translates driver errors.
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "sql: database is closed") {
		return fmt.Errorf("%w: %v", flux.ErrStoreClosed, err)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return fmt.Errorf("%w: database is locked by another process past the busy timeout: %v", flux.ErrStoreUnavailable, err)
		case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY:
			return fmt.Errorf("%w: %v", flux.ErrStoreUnavailable, err)
		}
	}
	return err
}

func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

const selectColumns = `SELECT id, aggregate_id, version, aggregate_type, event_id, event_name, event_version, payload, metadata, occurred_on, request_id, correlation_id, causation_id FROM events`

// ReadStream implements flux.EventStore.
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
	return s.query(ctx, b.String(), args)
}

// ReadAll implements flux.EventStore.
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
	return s.query(ctx, b.String(), args)
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

func (s *Store) query(ctx context.Context, query string, args []any) iter.Seq2[flux.Record, error] {
	return func(yield func(flux.Record, error) bool) {
		if s.closed.Load() {
			yield(flux.Record{}, flux.ErrStoreClosed)
			return
		}
		stmt, err := s.prepared(ctx, query)
		if err != nil {
			yield(flux.Record{}, s.readError(ctx, err))
			return
		}
		rows, err := stmt.QueryContext(ctx, args...)
		if err != nil {
			yield(flux.Record{}, s.readError(ctx, err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			rec, err := scanRecord(rows)
			if err != nil {
				if ctx.Err() != nil || s.closed.Load() { // the rows were closed under us
					err = s.readError(ctx, err)
				}
				yield(flux.Record{}, err)
				return
			}
			if !yield(rec, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(flux.Record{}, s.readError(ctx, err))
		}
	}
}

// prepared returns a prepared statement for query on the read pool,
// preparing and caching it on first use (without holding the cache lock
// while preparing, which may wait for a connection).
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	s.stmtMu.Lock()
	st, ok := s.stmts[query]
	s.stmtMu.Unlock()
	if ok {
		return st, nil
	}
	st, err := s.rdb.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if existing, ok := s.stmts[query]; ok {
		st.Close()
		return existing, nil
	}
	if s.stmts == nil || len(s.stmts) >= maxCachedStmts {
		for _, old := range s.stmts {
			old.Close()
		}
		s.stmts = make(map[string]*sql.Stmt)
	}
	s.stmts[query] = st
	return st, nil
}

// writeStmt returns query prepared on the write connection, caching it: an
// append of n events reuses the statement of the last append of n. It must
// not be called inside a write transaction (preparing needs the
// connection), and does not hold the cache lock while preparing.
func (s *Store) writeStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.stmtMu.Lock()
	st, ok := s.wstmts[query]
	s.stmtMu.Unlock()
	if ok {
		return st, nil
	}
	st, err := s.wdb.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if existing, ok := s.wstmts[query]; ok {
		st.Close()
		return existing, nil
	}
	if s.wstmts == nil || len(s.wstmts) >= maxCachedStmts {
		for _, old := range s.wstmts {
			old.Close() // database/sql closes it once no transaction uses it
		}
		s.wstmts = make(map[string]*sql.Stmt)
	}
	s.wstmts[query] = st
	return st, nil
}

func (s *Store) readError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return flux.ErrStoreClosed
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("sqlitestore: read: %w", ctxErr)
	}
	return interpretError(fmt.Errorf("sqlitestore: read: %w", err))
}

func scanRecord(rows *sql.Rows) (flux.Record, error) {
	var r flux.Record
	var metadata sql.NullString
	var occurred string
	if err := rows.Scan(&r.Position, &r.StreamID, &r.StreamVersion, &r.AggregateType, &r.EventID,
		&r.EventName, &r.EventVersion, &r.Payload, &metadata, &occurred,
		&r.Metadata.RequestID, &r.Metadata.CorrelationID, &r.Metadata.CausationID); err != nil {
		return r, fmt.Errorf("sqlitestore: scan event: %w", err)
	}
	err := decodeColumns(&r, occurred, metadata.String)
	return r, err
}

// decodeColumns parses the columns stored as text: the occurred-on time and
// the extra metadata (empty for NULL). Damaged values give ErrCorruptEvent
// naming the stream and version.
func decodeColumns(r *flux.Record, occurred, metadata string) error {
	t, err := parseTime(occurred)
	if err != nil {
		return fmt.Errorf("%w: sqlitestore: stream %q version %d: %v", flux.ErrCorruptEvent, r.StreamID, r.StreamVersion, err)
	}
	r.OccurredAt = t
	if metadata != "" {
		if err := json.Unmarshal([]byte(metadata), &r.Metadata.Extra); err != nil {
			return fmt.Errorf("%w: sqlitestore: stream %q version %d: metadata is not a JSON object of strings", flux.ErrCorruptEvent, r.StreamID, r.StreamVersion)
		}
	}
	return nil
}
