package mysqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/go-sql-driver/mysql"
)

// These tests need no server.

func TestInterpretError(t *testing.T) {
	t.Parallel()
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	read := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	cases := []struct {
		name  string
		err   error
		write bool
		is    error    // sentinel the result must match; nil: none of flux's
		says  []string // substrings of the message
	}{
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), true, context.DeadlineExceeded, nil},
		{"cancelled", context.Canceled, false, context.Canceled, nil},
		{"closed pool", errors.New("sql: database is closed"), false, flux.ErrStoreClosed, nil},
		{"bad connection", driver.ErrBadConn, true, flux.ErrStoreUnavailable, []string{"connection to the database was lost", "rolled back"}},
		{"invalid connection", mysql.ErrInvalidConn, true, flux.ErrStoreUnavailable, []string{"connection to the database was lost", "rolled back"}},
		{"EOF on a read", io.EOF, false, flux.ErrStoreUnavailable, []string{"connection to the database was lost"}},
		{"reset", read, true, flux.ErrStoreUnavailable, []string{"connection to the database was lost"}},
		{"refused", dial, true, flux.ErrStoreUnavailable, []string{"cannot connect"}},
		{"server shutdown", &mysql.MySQLError{Number: 1053, Message: "Server shutdown in progress"}, true, flux.ErrStoreUnavailable, []string{"connection to the database was lost"}},
		{"connection killed", &mysql.MySQLError{Number: 1927, Message: "Connection was killed"}, true, flux.ErrStoreUnavailable, []string{"lost"}},
		{"server gone", &mysql.MySQLError{Number: 2006, Message: "MySQL server has gone away"}, true, flux.ErrStoreUnavailable, []string{"lost"}},
		{"server lost", &mysql.MySQLError{Number: 2013, Message: "Lost connection"}, true, flux.ErrStoreUnavailable, []string{"lost"}},
		{"deadlock", &mysql.MySQLError{Number: 1213, Message: "Deadlock found"}, true, flux.ErrTransient, []string{"deadlock", "rolled back"}},
		{"lock wait timeout", &mysql.MySQLError{Number: 1205, Message: "Lock wait timeout exceeded"}, true, flux.ErrTransient, []string{"innodb_lock_wait_timeout", "log head"}},
		{"too many connections", &mysql.MySQLError{Number: 1040, Message: "Too many connections"}, false, flux.ErrStoreUnavailable, []string{"MaxOpenConns"}},
		{"read-only server", &mysql.MySQLError{Number: 1290, Message: "--read-only"}, true, flux.ErrStoreUnavailable, []string{"read-only"}},
		{"missing table", &mysql.MySQLError{Number: 1146, Message: "Table 'x.events' doesn't exist"}, false, nil, []string{"Migrate"}},
		{"packet too large", &mysql.MySQLError{Number: 1153, Message: "Got a packet bigger"}, true, nil, []string{"max_allowed_packet"}},
		{"conflict passes through", &flux.ConflictError{StreamID: "s", Expected: 1, Actual: 2}, true, flux.ErrConcurrencyConflict, []string{`"s"`}},
		{"other", errors.New("something odd"), false, nil, []string{"mysqlstore: op: something odd"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := interpretError("op", c.write, c.err)
			if c.is != nil && !errors.Is(got, c.is) {
				t.Fatalf("interpretError(%v) = %v, want it to match %v", c.err, got, c.is)
			}
			if c.is == nil && (errors.Is(got, flux.ErrStoreUnavailable) || errors.Is(got, flux.ErrStoreClosed)) {
				t.Fatalf("interpretError(%v) = %v, want no store sentinel", c.err, got)
			}
			if !errors.Is(got, c.err) {
				t.Fatalf("interpretError(%v) = %v, lost the cause", c.err, got)
			}
			for _, s := range c.says {
				if !strings.Contains(got.Error(), s) {
					t.Fatalf("interpretError(%v) = %q, want it to say %q", c.err, got, s)
				}
			}
			if !c.write && strings.Contains(got.Error(), "rolled back") {
				t.Fatalf("a read error says %q", got)
			}
		})
	}
	if interpretError("op", true, nil) != nil {
		t.Fatal("interpretError(nil) != nil")
	}
}

func TestUTCTimeScan(t *testing.T) {
	t.Parallel()
	want := time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)
	local := time.FixedZone("UTC+5", 5*3600)
	cases := []struct {
		name string
		in   any
		ok   bool
	}{
		{"time in UTC", want, true},
		{"time read with another loc keeps its wall clock", time.Date(2026, 3, 14, 15, 9, 26, 535897000, local), true},
		{"text with microseconds", []byte("2026-03-14 15:09:26.535897"), true},
		{"string", "2026-03-14 15:09:26.535897", true},
		{"garbage", []byte("yesterday"), false},
		{"NULL", nil, false},
		{"number", int64(5), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got time.Time
			err := utcTime{&got}.Scan(c.in)
			if !c.ok {
				if err == nil {
					t.Fatalf("Scan(%v) = %v, want an error", c.in, got)
				}
				return
			}
			if err != nil || !got.Equal(want) || got.Location() != time.UTC {
				t.Fatalf("Scan(%v) = %v, %v; want %v UTC", c.in, got, err, want)
			}
		})
	}
	if s := formatTime(want.In(local)); s != "2026-03-14 15:09:26.535897" {
		t.Fatalf("formatTime = %q", s)
	}
}

func TestMigrationsParse(t *testing.T) {
	t.Parallel()
	steps, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) < 2 {
		t.Fatalf("%d migration steps", len(steps))
	}
	for i, m := range steps {
		if m.version != i+1 || len(m.statements) == 0 {
			t.Fatalf("step %d = %+v", i, m)
		}
		for _, st := range m.statements {
			if strings.HasSuffix(st, ";") || strings.TrimSpace(st) == "" || strings.Contains(strings.ReplaceAll(st, "{{collate}}", ""), "{{") {
				t.Fatalf("step %s has a malformed statement %q", m.name, st)
			}
		}
	}
	got := splitStatements("-- comment; with a semicolon\nCREATE TABLE a (x INT); \n\n-- another\nINSERT INTO a VALUES (1)\n;\nSELECT 1")
	want := []string{"CREATE TABLE a (x INT)", "INSERT INTO a VALUES (1)", "SELECT 1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("splitStatements = %q, want %q", got, want)
	}
}

func TestPlanChunks(t *testing.T) {
	t.Parallel()
	evs := func(n, size int) []flux.EventData {
		out := make([]flux.EventData, n)
		for i := range out {
			out[i] = flux.EventData{EventName: "E", Payload: make([]byte, size)}
		}
		return out
	}
	cases := []struct {
		name    string
		budget  int
		streams [][]flux.EventData
		want    []chunk
	}{
		{"small events fit one insert per stream", 1 << 20, [][]flux.EventData{evs(3, 10), evs(2, 10)}, []chunk{{0, 0, 3}, {1, 0, 2}}},
		{"split by bytes", 10_000, [][]flux.EventData{evs(5, 2000)}, []chunk{{0, 0, 2}, {0, 2, 4}, {0, 4, 5}}},
		{"an event over the budget goes alone", 10_000, [][]flux.EventData{append(evs(1, 100), append(evs(1, 50_000), evs(1, 100)...)...)}, []chunk{{0, 0, 1}, {0, 1, 2}, {0, 2, 3}}},
		{"split by rows", 1 << 30, [][]flux.EventData{evs(maxRowsPerInsert+1, 1)}, []chunk{{0, 0, maxRowsPerInsert}, {0, maxRowsPerInsert, maxRowsPerInsert + 1}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &Store{stmtBudget: c.budget}
			req := &flux.AppendRequest{}
			for i, e := range c.streams {
				req.Streams = append(req.Streams, flux.StreamAppend{StreamID: fmt.Sprint(i), AggregateType: "T", Events: e})
			}
			got := s.planChunks(req)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("planChunks = %v, want %v", got, c.want)
			}
		})
	}
}

func TestParseInt(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"42", 42, true}, {"-7", -7, true}, {"9223372036854775807", 9223372036854775807, true},
		{"", 0, false}, {"-", 0, false}, {"1x", 0, false}, {"12345678901234567890", 0, false},
	}
	for _, c := range cases {
		got, ok := parseInt([]byte(c.in))
		if ok != c.ok || ok && got != c.want {
			t.Errorf("parseInt(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestCheckColumns(t *testing.T) {
	t.Parallel()
	mk := func(md flux.Metadata, payload string) *flux.AppendRequest {
		return &flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: "s", AggregateType: "T",
			Events: []flux.EventData{{EventName: "E", Metadata: md, Payload: []byte(payload)}}}}}
	}
	cases := []struct {
		name    string
		md      flux.Metadata
		payload string
		ok      bool
	}{
		{"empty", flux.Metadata{}, `{}`, true},
		{"255 four-byte characters fit", flux.Metadata{RequestID: strings.Repeat("🚀", 255)}, `{"a":"🚀"}`, true},
		{"256 characters do not", flux.Metadata{CorrelationID: strings.Repeat("x", 256)}, `{}`, false},
		{"invalid UTF-8 in metadata", flux.Metadata{CausationID: "a\xffb"}, `{}`, false},
		{"invalid UTF-8 in the payload", flux.Metadata{}, "{\"a\":\"\xff\"}", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkColumns(mk(c.md, c.payload))
			if c.ok != (err == nil) || err != nil && !errors.Is(err, flux.ErrInvalidAppend) {
				t.Fatalf("checkColumns = %v, want ok %v", err, c.ok)
			}
		})
	}
}

// commitFailed passes on errors that prove a rollback, and when the
// connection broke after COMMIT and the database cannot be asked (the
// pool points at a closed port), says the outcome is unknown.
func TestCommitFailedWithoutDatabaseSaysOutcomeUnknown(t *testing.T) {
	t.Parallel()
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.DBName = "tcp", "127.0.0.1:1", "x"
	cfg.Timeout = time.Second
	cfg.Logger = &mysql.NopLogger{}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	s := &Store{db: db, opts: (*Options)(nil).withDefaults()}
	s.log = s.opts.Logger
	req := &flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: "s", AggregateType: "T",
		Events: []flux.EventData{{EventID: "0190e4a5-0000-7000-8000-000000000001", EventName: "E"}}}}}
	cases := []struct {
		name string
		err  error
		want []string
	}{
		{"never sent", driver.ErrBadConn, nil},
		{"server refused", &mysql.MySQLError{Number: 1180, Message: "Got error during COMMIT"}, nil},
		{"lost after sending", mysql.ErrInvalidConn, []string{"while committing", "could not be asked", "0190e4a5-0000-7000-8000-000000000001"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := s.commitFailed(context.Background(), req, c.err)
			if c.want == nil {
				if got != c.err {
					t.Fatalf("commitFailed(%v) = %v, want it unchanged", c.err, got)
				}
				return
			}
			if !errors.Is(got, flux.ErrStoreUnavailable) {
				t.Fatalf("commitFailed = %v, want ErrStoreUnavailable", got)
			}
			for _, w := range c.want {
				if !strings.Contains(got.Error(), w) {
					t.Fatalf("commitFailed = %q, want it to say %q", got, w)
				}
			}
		})
	}
}
