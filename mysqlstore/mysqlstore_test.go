package mysqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/mysqlstore"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/storetest"
	"github.com/fluxcapacitor/flux/txhook"
	"github.com/fluxcapacitor/flux/uuid"
	"github.com/go-sql-driver/mysql"
)

var ids uuid.Generator

// openTemp opens a store on a fresh database of its own.
func openTemp(t testing.TB, opts *mysqlstore.Options) *mysqlstore.Store {
	t.Helper()
	s, err := mysqlstore.Open(t.Context(), mysqlstore.NewTestDatabase(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ev(name, payload string) flux.EventData {
	return flux.EventData{EventID: ids.New(), EventName: name, EventVersion: 1, Payload: []byte(payload), OccurredAt: time.Now()}
}

func appendOne(ctx context.Context, s flux.EventStore, stream string, exp flux.ExpectedVersion, evs ...flux.EventData) (flux.AppendResult, error) {
	return s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: stream, AggregateType: "T", Expected: exp, Events: evs}}})
}

func readStream(t testing.TB, s flux.EventStore, id string) []flux.Record {
	t.Helper()
	var out []flux.Record
	for r, err := range s.ReadStream(context.Background(), id, flux.ReadStreamOptions{}) {
		if err != nil {
			t.Fatalf("read %q: %v", id, err)
		}
		out = append(out, r)
	}
	return out
}

func TestConformance(t *testing.T) {
	mysqlstore.AdminDB(t, mysqlstore.ServerDSN(t)) // shared by the whole binary: opened before the suite's goroutine-leak check
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) flux.EventStore { return openTemp(t, nil) },
	})
}

// The suite again, on a pool the caller opened (New): appends then run in
// ordinary database/sql transactions.
func TestConformanceOnTheCallersPool(t *testing.T) {
	mysqlstore.AdminDB(t, mysqlstore.ServerDSN(t)) // shared by the whole binary: opened before the suite's goroutine-leak check
	storetest.Run(t, storetest.Harness{
		Short: true,
		New:   func(t *testing.T) flux.EventStore { return openOnCallersPool(t) },
	})
}

func TestProjectTx(t *testing.T) {
	mysqlstore.AdminDB(t, mysqlstore.ServerDSN(t)) // shared by the whole binary: opened before the suite's goroutine-leak check
	storetest.RunProjectTx(t, storetest.TxHarness[*sql.Tx]{
		New: func(t *testing.T) (projection.TxStore[*sql.Tx], projection.CheckpointStore) {
			s := openTemp(t, nil)
			// DDL would commit the projection's transaction: create the
			// read model's table beforehand, as ProjectTx documents.
			if _, err := s.DB().ExecContext(t.Context(), `CREATE TABLE counters (k VARCHAR(64) PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB`); err != nil {
				t.Fatal(err)
			}
			return s, s
		},
		Increment: func(ctx context.Context, tx *sql.Tx, key string) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO counters (k, n) VALUES (?, 1) ON DUPLICATE KEY UPDATE n = n + 1`, key)
			return err
		},
		Count: func(ctx context.Context, t *testing.T, store projection.TxStore[*sql.Tx], key string) int {
			var n int
			err := store.(*mysqlstore.Store).DB().QueryRowContext(ctx, `SELECT n FROM counters WHERE k = ?`, key).Scan(&n)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				t.Fatal(err)
			}
			return n
		},
	})
}

func TestOpenRejectsBadOptions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts mysqlstore.Options
		want string
	}{
		{"negative event size", mysqlstore.Options{MaxEventSize: -1}, "MaxEventSize"},
		{"negative connections", mysqlstore.Options{MaxOpenConns: -1}, "MaxOpenConns"},
		{"negative lifetime", mysqlstore.Options{ConnMaxLifetime: -time.Second}, "ConnMaxLifetime"},
		{"negative retries", mysqlstore.Options{DeadlockRetries: -1}, "DeadlockRetries"},
		{"every problem at once", mysqlstore.Options{MaxEventSize: -1, DeadlockRetries: -1}, "DeadlockRetries"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := mysqlstore.Open(t.Context(), "root@tcp(127.0.0.1:1)/x", &c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to name %s", err, c.want)
			}
		})
	}
}

func TestOpenRejectsBadDSNs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, dsn, want string
	}{
		{"not a DSN", "postgres://localhost/x", "DSN"},
		{"no database", "root@tcp(127.0.0.1:1)/", "names no database"},
		{"not utf8mb4", "root@tcp(127.0.0.1:1)/x?collation=latin1_swedish_ci", "utf8mb4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := mysqlstore.Open(t.Context(), c.dsn, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to say %q", err, c.want)
			}
		})
	}
}

func TestOpenReportsAnUnreachableServer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := mysqlstore.Open(ctx, "root@tcp(127.0.0.1:1)/flux?timeout=2s", nil)
	if !errors.Is(err, flux.ErrStoreUnavailable) || !strings.Contains(err.Error(), "cannot connect") {
		t.Fatalf("err = %v, want ErrStoreUnavailable saying it cannot connect", err)
	}
}

func TestWakeSignalsAfterAppend(t *testing.T) {
	t.Parallel()
	s := openTemp(t, nil)
	ch, err := s.Wake(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := appendOne(t.Context(), s, "s", flux.NoStream, ev("E", `{}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up after an append")
	}
}

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	dsn := mysqlstore.NewTestDatabase(t)
	const n = 4
	stores := make([]*mysqlstore.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = mysqlstore.Open(t.Context(), dsn, &mysqlstore.Options{MaxOpenConns: 2})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("concurrent open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	if err := stores[0].Migrate(t.Context()); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	var steps, heads int
	db := stores[0].DB()
	if err := db.QueryRow(`SELECT COUNT(*) FROM flux_schema_migrations`).Scan(&steps); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`SELECT COUNT(*) FROM flux_log_head`).Scan(&heads); err != nil {
		t.Fatal(err)
	}
	if steps != 2 || heads != 1 {
		t.Fatalf("after concurrent migrations: %d steps recorded, %d head rows; want 2 and 1", steps, heads)
	}
	// Every store works on the shared schema.
	for i, s := range stores {
		if _, err := appendOne(t.Context(), s, fmt.Sprint("s", i), flux.NoStream, ev("E", `{}`)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMigrateRefusesForeignLayouts(t *testing.T) {
	mysqlstore.ServerDSN(t)
	t.Parallel()
	cases := []struct {
		name  string
		setup []string
		want  string
	}{
		{"the PHP library's events table", []string{`CREATE TABLE events (
			id BIGINT PRIMARY KEY AUTO_INCREMENT, aggregate_id VARCHAR(255) NOT NULL, aggregate_type VARCHAR(255) NOT NULL,
			event_name VARCHAR(255) NOT NULL, event_version INT NOT NULL DEFAULT 1, payload JSON NOT NULL,
			occurred_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, request_id VARCHAR(255) NOT NULL, version INT NOT NULL,
			UNIQUE KEY unique_aggregate_version (aggregate_id, version))`}, "lacks column(s) event_id, metadata, correlation_id, causation_id"},
		{"a schema from a newer build", []string{
			`CREATE TABLE flux_schema_migrations (version INT NOT NULL PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at DATETIME(6) NOT NULL)`,
			`INSERT INTO flux_schema_migrations VALUES (99, 'future', NOW())`}, "newer than this build"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dsn := mysqlstore.NewTestDatabase(t)
			db, err := sql.Open("mysql", dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, q := range c.setup {
				if _, err := db.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			s, err := mysqlstore.Open(t.Context(), dsn, nil)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to say %q", err, c.want)
			}
		})
	}
}

// New works on the caller's pool whatever its time settings, and Close
// leaves that pool open.
func TestNewOnTheCallersPool(t *testing.T) {
	mysqlstore.ServerDSN(t)
	t.Parallel()
	plus5 := time.FixedZone("UTC+5", 5*3600)
	cases := []struct {
		name      string
		parseTime bool
		loc       *time.Location
		interp    bool
	}{
		{"parseTime with another zone, prepared statements", true, plus5, false},
		{"no parseTime, interpolated", false, time.UTC, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := mysql.ParseDSN(mysqlstore.NewTestDatabase(t))
			if err != nil {
				t.Fatal(err)
			}
			cfg.ParseTime, cfg.Loc, cfg.InterpolateParams = c.parseTime, c.loc, c.interp
			connector, err := mysql.NewConnector(cfg)
			if err != nil {
				t.Fatal(err)
			}
			db := sql.OpenDB(connector)
			defer db.Close()
			s, err := mysqlstore.New(t.Context(), db, nil)
			if err != nil {
				t.Fatal(err)
			}
			at := time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)
			e := ev("E", `{"a":1}`)
			e.OccurredAt = at.In(plus5)
			e.Metadata.Extra = map[string]string{"k": "v"}
			if _, err := appendOne(t.Context(), s, "s", flux.NoStream, e); err != nil {
				t.Fatal(err)
			}
			recs := readStream(t, s, "s")
			if len(recs) != 1 || !recs[0].OccurredAt.Equal(at) || recs[0].OccurredAt.Location() != time.UTC || recs[0].Metadata.Extra["k"] != "v" {
				t.Fatalf("records = %+v, want one at %v UTC", recs, at)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := db.PingContext(t.Context()); err != nil {
				t.Fatalf("the caller's pool after Close: %v", err)
			}
		})
	}
}

// Stream IDs compare byte for byte: case and trailing spaces make other
// streams (a PAD SPACE or case-insensitive collation would merge them).
func TestStreamIDsCompareExactly(t *testing.T) {
	t.Parallel()
	s := openTemp(t, nil)
	ids := []string{"acc", "Acc", "acc ", "ACC", "açc"}
	for _, id := range ids {
		if _, err := appendOne(t.Context(), s, id, flux.NoStream, ev("E", `{}`)); err != nil {
			t.Fatalf("append to %q: %v", id, err)
		}
	}
	for _, id := range ids {
		recs := readStream(t, s, id)
		if len(recs) != 1 || recs[0].StreamID != id {
			t.Fatalf("stream %q holds %d records (%+v)", id, len(recs), recs)
		}
	}
	n := 0
	for si, err := range s.ListStreams(t.Context(), flux.ListStreamsOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if si.Version != 1 {
			t.Fatalf("stream %q at version %d", si.StreamID, si.Version)
		}
		n++
	}
	if n != len(ids) {
		t.Fatalf("ListStreams found %d streams, want %d", n, len(ids))
	}
}

// An append larger than max_allowed_packet is split into several INSERTs
// and still commits as one.
func TestAppendLargerThanMaxAllowedPacket(t *testing.T) {
	t.Parallel()
	s := openTemp(t, nil)
	var packet int
	if err := s.DB().QueryRow(`SELECT @@max_allowed_packet`).Scan(&packet); err != nil {
		t.Fatal(err)
	}
	payload := `{"blob":"` + strings.Repeat(`x"\`, (1<<20)/3) + `"}`
	payload = strings.ReplaceAll(payload, `x"\`, `x\"`) // quotes and backslashes double when escaped
	n := packet/len(payload) + 3
	evs := make([]flux.EventData, n)
	for i := range evs {
		evs[i] = ev("Big", payload)
	}
	res, err := appendOne(t.Context(), s, "big", flux.NoStream, evs...)
	if err != nil {
		t.Fatal(err)
	}
	if res.Versions[0] != int64(n) || len(res.Positions) != n || res.Positions[n-1]-res.Positions[0] != int64(n-1) {
		t.Fatalf("result = versions %v, %d positions from %d to %d", res.Versions, len(res.Positions), res.Positions[0], res.Positions[len(res.Positions)-1])
	}
	recs := readStream(t, s, "big")
	if len(recs) != n {
		t.Fatalf("stored %d of %d events", len(recs), n)
	}
	for i, r := range recs {
		if r.StreamVersion != int64(i+1) || r.Position != res.Positions[i] || len(r.Payload) < len(payload)-8 {
			t.Fatalf("record %d: version %d position %d, %d payload bytes", i, r.StreamVersion, r.Position, len(r.Payload))
		}
	}
}

func TestMetadataTheTableCannotHoldIsRejectedBeforeIO(t *testing.T) {
	t.Parallel()
	s := openTemp(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	e := ev("E", `{}`)
	e.Metadata.RequestID = strings.Repeat("r", 256)
	_, err := appendOne(ctx, s, "s", flux.NoStream, e)
	if !errors.Is(err, flux.ErrInvalidAppend) || !strings.Contains(err.Error(), "request ID") {
		t.Fatalf("err = %v, want ErrInvalidAppend naming the request ID", err)
	}
}

// A program inserting into events behind flux's back takes a position the
// head hands out later; the append that collides says so.
func TestForeignWriterIsReported(t *testing.T) {
	t.Parallel()
	s := openTemp(t, nil)
	if _, err := s.DB().Exec(`INSERT INTO events (event_id, aggregate_id, aggregate_type, event_name, payload, occurred_on, request_id, version)
		VALUES (UUID(), 'php', 'T', 'E', '{}', NOW(6), '', 1)`); err != nil {
		t.Fatal(err)
	}
	_, err := appendOne(t.Context(), s, "s", flux.NoStream, ev("E", `{}`))
	if err == nil || !strings.Contains(err.Error(), "already taken") || !strings.Contains(err.Error(), "flux_log_head") {
		t.Fatalf("err = %v, want it to explain the taken position", err)
	}
	if recs := readStream(t, s, "s"); len(recs) != 0 {
		t.Fatalf("the failed append wrote %d events", len(recs))
	}
}

func TestEveryMethodFailsAfterClose(t *testing.T) {
	t.Parallel()
	s := openTemp(t, nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	first := func(seq func(func(flux.StreamInfo, error) bool)) error {
		for _, err := range seq {
			return err
		}
		return nil
	}
	calls := map[string]func() error{
		"Append":            func() error { _, err := appendOne(ctx, s, "s", flux.Any, ev("E", `{}`)); return err },
		"Head":              func() error { _, err := s.Head(ctx); return err },
		"ListStreams":       func() error { return first(s.ListStreams(ctx, flux.ListStreamsOptions{})) },
		"LoadSnapshot":      func() error { _, _, err := s.LoadSnapshot(ctx, "s", flux.SnapshotQuery{SchemaVersion: 1}); return err },
		"PruneSnapshots":    func() error { _, err := s.PruneSnapshots(ctx, 1); return err },
		"DeleteSnapshots":   func() error { _, err := s.DeleteSnapshots(ctx, ""); return err },
		"LookupIdempotency": func() error { _, _, err := s.LookupIdempotency(ctx, "k"); return err },
		"LoadKey":           func() error { _, err := s.LoadKey(ctx, "u"); return err },
		"CreateKey":         func() error { _, err := s.CreateKey(ctx, pii.StoredKey{Subject: "u", Wrapped: "w"}); return err },
		"ForgetSubject":     func() error { return s.ForgetSubject(ctx, pii.Forgetting{Subject: "u"}) },
		"Forgotten":         func() error { _, _, err := s.Forgotten(ctx, "u"); return err },
		"RewrapKeys":        func() error { _, err := s.RewrapKeys(ctx, nil); return err },
		"LoadCheckpoint":    func() error { _, err := s.LoadCheckpoint(ctx, "p"); return err },
		"SaveCheckpoint":    func() error { return s.SaveCheckpoint(ctx, projection.Checkpoint{Name: "p"}) },
		"ListCheckpoints":   func() error { _, err := s.ListCheckpoints(ctx); return err },
		"DeleteCheckpoint":  func() error { return s.DeleteCheckpoint(ctx, "p") },
		"ProjectTx":         func() error { return s.ProjectTx(ctx, 0, projection.Checkpoint{Name: "p"}, nil) },
		"Wake":              func() error { _, err := s.Wake(ctx); return err },
		"Migrate":           func() error { return s.Migrate(ctx) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, flux.ErrStoreClosed) {
			t.Errorf("%s after Close: err = %v, want ErrStoreClosed", name, err)
		}
	}
}

// holdAppend starts an append to stream that stops just before its commit
// until release is closed; it returns once the append holds the log head.
func holdAppend(t *testing.T, s *mysqlstore.Store, stream string) (release func(), done <-chan error) {
	t.Helper()
	held, hold := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		ctx := txhook.WithBeforeCommit(context.Background(), func(context.Context) error {
			close(held)
			<-hold
			return nil
		})
		_, err := appendOne(ctx, s, stream, flux.NoStream, ev("E", `{}`))
		errc <- err
	}()
	select {
	case <-held:
	case err := <-errc:
		t.Fatalf("holding append: %v", err)
	}
	var once sync.Once
	release = func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	return release, errc
}

func dbName(t testing.TB, s *mysqlstore.Store) string {
	var name string
	if err := s.DB().QueryRow(`SELECT DATABASE()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

// killWhere kills, from the admin pool, the connections to s's database
// that the condition on information_schema.PROCESSLIST (p) selects,
// waiting up to 10s for one.
func killWhere(t *testing.T, s *mysqlstore.Store, cond string) {
	t.Helper()
	admin := mysqlstore.AdminDB(t, mysqlstore.ServerDSN(t))
	name := dbName(t, s)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		rows, err := admin.Query(`SELECT p.ID FROM information_schema.PROCESSLIST p WHERE p.DB = ? AND `+cond, name)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for rows.Next() {
			var id int64
			rows.Scan(&id)
			ids = append(ids, id)
		}
		rows.Close()
		for _, id := range ids {
			admin.Exec(fmt.Sprintf("KILL CONNECTION %d", id))
		}
		if len(ids) > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no connection matched %s", cond)
}

// A connection killed under an append (the server side of a lost
// connection) gives ErrStoreUnavailable saying the connection was lost and
// the transaction rolled back; nothing is written and the store goes on.
func TestLostConnectionIsReported(t *testing.T) {
	mysqlstore.ServerDSN(t)
	t.Parallel()
	wantLost := func(t *testing.T, who string, err error) {
		t.Helper()
		if !errors.Is(err, flux.ErrStoreUnavailable) || !strings.Contains(err.Error(), "connection to the database was lost") ||
			!strings.Contains(err.Error(), "rolled back") {
			t.Fatalf("%s: err = %v, want ErrStoreUnavailable saying the connection was lost and the transaction rolled back", who, err)
		}
		t.Logf("%s: %v", who, err)
	}
	t.Run("while waiting for the log head", func(t *testing.T) {
		t.Parallel()
		s := openTemp(t, nil)
		release, holderDone := holdAppend(t, s, "holder")
		waiterDone := make(chan error, 1)
		go func() {
			_, err := appendOne(context.Background(), s, "waiter", flux.NoStream, ev("E", `{}`))
			waiterDone <- err
		}()
		killWhere(t, s, `p.INFO LIKE 'UPDATE flux_log_head%'`)
		wantLost(t, "waiter", <-waiterDone)
		release()
		if err := <-holderDone; err != nil {
			t.Fatalf("holder: %v", err)
		}
		if n := len(readStream(t, s, "waiter")); n != 0 {
			t.Fatalf("the killed append wrote %d events", n)
		}
		if _, err := appendOne(t.Context(), s, "after", flux.NoStream, ev("E", `{}`)); err != nil {
			t.Fatalf("append after the lost connection: %v", err)
		}
	})
	t.Run("while holding the log head", func(t *testing.T) {
		t.Parallel()
		s := openTemp(t, nil)
		release, holderDone := holdAppend(t, s, "holder")
		// The holder's connection sleeps inside its transaction; the
		// pool's idle connections, killed too, are simply replaced.
		killWhere(t, s, `p.COMMAND = 'Sleep'`)
		release()
		wantLost(t, "holder", <-holderDone)
		if n := len(readStream(t, s, "holder")); n != 0 {
			t.Fatalf("the killed append wrote %d events", n)
		}
		res, err := appendOne(t.Context(), s, "after", flux.NoStream, ev("E", `{}`))
		if err != nil {
			t.Fatalf("append after the lost connection: %v", err)
		}
		if res.Positions[0] != 1 {
			t.Fatalf("the next append got position %d, want 1: the killed append left a hole", res.Positions[0])
		}
	})
}

// An append that waits for the log head longer than
// innodb_lock_wait_timeout gives ErrTransient (RetryOnConflict retries it)
// naming the lock.
func TestLockWaitTimeoutIsReported(t *testing.T) {
	t.Parallel()
	dsn := mysqlstore.NewTestDatabase(t)
	s1, err := mysqlstore.Open(t.Context(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Params = map[string]string{"innodb_lock_wait_timeout": "1"}
	s2, err := mysqlstore.Open(t.Context(), cfg.FormatDSN(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	release, done := holdAppend(t, s1, "holder")
	_, err = appendOne(t.Context(), s2, "waiter", flux.NoStream, ev("E", `{}`))
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, flux.ErrTransient) || !strings.Contains(err.Error(), "innodb_lock_wait_timeout") {
		t.Fatalf("err = %v, want ErrTransient naming innodb_lock_wait_timeout", err)
	}
	if n := len(readStream(t, s2, "waiter")); n != 0 {
		t.Fatalf("the timed-out append wrote %d events", n)
	}
}

// An event size the server's max_allowed_packet cannot carry is refused
// when the store opens, not at the first large event.
func TestOpenRefusesAnEventSizeThePacketCannotCarry(t *testing.T) {
	t.Parallel()
	_, err := mysqlstore.Open(t.Context(), mysqlstore.NewTestDatabase(t), &mysqlstore.Options{MaxEventSize: 1 << 30})
	if err == nil || !strings.Contains(err.Error(), "max_allowed_packet") {
		t.Fatalf("err = %v, want it to name max_allowed_packet", err)
	}
}

// openOnCallersPool opens a store with New on a pool of its own, as an
// application would.
func openOnCallersPool(t testing.TB) *mysqlstore.Store {
	t.Helper()
	cfg, err := mysql.ParseDSN(mysqlstore.NewTestDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.InterpolateParams = true
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	s, err := mysqlstore.New(t.Context(), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Exact expectations are checked in the INSERT (in one round trip with
// the head UPDATE on Open's pool, or in its own statement, with a UNION
// ALL member per event, on New's) or, for large batches on New's pool, by
// a read; every way gives the same answers.
func TestExactExpectationsForEveryBatchSize(t *testing.T) {
	mysqlstore.ServerDSN(t)
	t.Parallel()
	stores := []struct {
		name string
		open func(testing.TB) *mysqlstore.Store
	}{
		{"Open", func(t testing.TB) *mysqlstore.Store { return openTemp(t, nil) }},
		{"New", openOnCallersPool},
	}
	evs := func(n int) []flux.EventData {
		out := make([]flux.EventData, n)
		for i := range out {
			out[i] = ev("E", `{}`)
		}
		return out
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			s := st.open(t)
			for _, n := range []int{1, 2, 4, 5, 40} {
				t.Run(fmt.Sprintf("%d events", n), func(t *testing.T) {
					id := fmt.Sprint("batch-", n)
					if _, err := appendOne(t.Context(), s, id, flux.NoStream, evs(2)...); err != nil {
						t.Fatal(err)
					}
					for _, exp := range []flux.ExpectedVersion{flux.NoStream, 1, 5} {
						_, err := appendOne(t.Context(), s, id, exp, evs(n)...)
						var ce *flux.ConflictError
						if !errors.As(err, &ce) || ce.StreamID != id || ce.Expected != exp || ce.Actual != 2 {
							t.Fatalf("expecting %v: err = %v, want a conflict with actual version 2", exp, err)
						}
					}
					res, err := appendOne(t.Context(), s, id, 2, evs(n)...)
					if err != nil || res.Versions[0] != int64(2+n) {
						t.Fatalf("expecting 2: %v, %v", res, err)
					}
					recs := readStream(t, s, id)
					if len(recs) != 2+n || recs[len(recs)-1].StreamVersion != int64(2+n) {
						t.Fatalf("stream holds %d events", len(recs))
					}
					for i, p := range res.Positions {
						if recs[2+i].Position != p {
							t.Fatalf("event %d at position %d, the append reported %d", 2+i, recs[2+i].Position, p)
						}
					}
				})
			}
			checkDense(t, s, 5*2+1+2+4+5+40)
		})
	}
}

// The longest stream ID flux accepts (255 bytes, ASCII or 4-byte
// characters) fits the unique index, as do names and keys of that length.
func TestLongestIDsFitTheIndexes(t *testing.T) {
	mysqlstore.ServerDSN(t)
	t.Parallel()
	s := openTemp(t, nil)
	cases := []struct{ name, id string }{
		{"255 ASCII bytes", strings.Repeat("a", 255)},
		{"63 emoji and 3 bytes", strings.Repeat("🚀", 63) + "abc"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := ev(strings.Repeat("N", 255), `{}`)
			_, err := s.Append(t.Context(), flux.AppendRequest{
				Streams:     []flux.StreamAppend{{StreamID: c.id, AggregateType: strings.Repeat("T", 255), Expected: flux.NoStream, Events: []flux.EventData{e}}},
				Idempotency: &flux.IdempotencyRecord{Key: c.id, Result: []byte(`1`), CreatedAt: time.Now()},
			})
			if err != nil {
				t.Fatal(err)
			}
			if recs := readStream(t, s, c.id); len(recs) != 1 || recs[0].StreamID != c.id {
				t.Fatalf("read back %+v", recs)
			}
			if _, err := s.CreateKey(t.Context(), pii.StoredKey{Subject: c.id, Wrapped: "w", CreatedAt: time.Now(), UpdatedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveCheckpoint(t.Context(), projection.Checkpoint{Name: c.id, Position: 1, UpdatedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
