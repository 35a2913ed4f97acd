package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pgstore"
	"github.com/fluxcapacitor/flux/pii/piitest"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/storetest"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestConformance(t *testing.T) {
	testDSN(t)
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) flux.EventStore { return openTest(t, nil) },
	})
}

func TestProjectTx(t *testing.T) {
	testDSN(t)
	storetest.RunProjectTx(t, storetest.TxHarness[pgx.Tx]{
		New: func(t *testing.T) (projection.TxStore[pgx.Tx], projection.CheckpointStore) {
			s := openTest(t, nil)
			counters := pgx.Identifier{s.Schema(), "counters"}.Sanitize()
			if _, err := s.Pool().Exec(t.Context(), `CREATE TABLE `+counters+` (k TEXT PRIMARY KEY, n INTEGER NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			return s, s
		},
		// ProjectTx puts the store's schema first on the search path, so
		// the read model's table needs no qualification.
		Increment: func(ctx context.Context, tx pgx.Tx, key string) error {
			_, err := tx.Exec(ctx, `INSERT INTO counters (k, n) VALUES ($1, 1) ON CONFLICT (k) DO UPDATE SET n = counters.n + 1`, key)
			return err
		},
		Count: func(ctx context.Context, t *testing.T, store projection.TxStore[pgx.Tx], key string) int {
			s := store.(*pgstore.Store)
			var n int
			err := s.Pool().QueryRow(ctx, `SELECT n FROM `+pgx.Identifier{s.Schema(), "counters"}.Sanitize()+` WHERE k = $1`, key).Scan(&n)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				t.Fatal(err)
			}
			return n
		},
	})
}

func TestWake(t *testing.T) {
	t.Parallel()
	dsn := testDSN(t)
	schema := freshSchema(t, dsn)
	writer := openOn(t, dsn, &pgstore.Options{Schema: schema})
	// A second store on the same schema, as another process would be: only
	// PostgreSQL's NOTIFY can wake it.
	follower := openOn(t, dsn, &pgstore.Options{Schema: schema})
	other := openTest(t, nil) // another schema: must not be woken

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	fromWriter, err := writer.Wake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fromFollower, err := follower.Wake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fromOther, err := other.Wake(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("s", flux.NoStream, event("E", `{}`))}}); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan struct{}{"the appending store": fromWriter, "another store on the schema": fromFollower} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s was not woken after an append", name)
		}
	}
	select {
	case <-fromOther:
		t.Fatal("a store on another schema was woken")
	case <-time.After(200 * time.Millisecond):
	}

	// After Close, Wake reports the closed store.
	follower.Close()
	if _, err := follower.Wake(ctx); !errors.Is(err, flux.ErrStoreClosed) {
		t.Fatalf("wake after close: err = %v", err)
	}
}

func TestNewLeavesThePoolOpen(t *testing.T) {
	t.Parallel()
	dsn := testDSN(t)
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s, err := pgstore.New(t.Context(), pool, &pgstore.Options{Schema: freshSchema(t, dsn)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(t.Context(), flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("s", flux.NoStream, event("E", `{}`))}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pool.Ping(t.Context()); err != nil {
		t.Fatalf("the pool New was given is unusable after Close: %v", err)
	}
	if _, err := s.Head(t.Context()); !errors.Is(err, flux.ErrStoreClosed) {
		t.Fatalf("head after close: err = %v", err)
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	dsn := testDSN(t)
	schema := freshSchema(t, dsn)

	t.Run("concurrent first migrations all succeed", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make([]error, 6)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := pgstore.Open(t.Context(), dsn, &pgstore.Options{Schema: schema})
				if err == nil {
					err = s.Migrate(t.Context()) // and once more
					s.Close()
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("migration %d: %v", i, err)
			}
		}
	})

	s := openOn(t, dsn, &pgstore.Options{Schema: schema, SkipMigrate: true})
	versions := pgx.Identifier{schema, "flux_schema_migrations"}.Sanitize()
	var n, top int
	if err := s.Pool().QueryRow(t.Context(), `SELECT count(*), max(version) FROM `+versions).Scan(&n, &top); err != nil {
		t.Fatal(err)
	}
	if n != top || n < 3 {
		t.Fatalf("schema versions: %d rows up to %d, want one row per step", n, top)
	}

	t.Run("a schema from a newer build is refused", func(t *testing.T) {
		if _, err := s.Pool().Exec(t.Context(), `INSERT INTO `+versions+` (version, name) VALUES (999, 'from the future')`); err != nil {
			t.Fatal(err)
		}
		defer s.Pool().Exec(context.Background(), `DELETE FROM `+versions+` WHERE version = 999`)
		err := s.Migrate(t.Context())
		if err == nil || !strings.Contains(err.Error(), "newer than this build") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestOptionsAreValidated(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts pgstore.Options
		want string
	}{
		{"schema name too long", pgstore.Options{Schema: strings.Repeat("s", 64)}, "at most 63"},
		{"reserved schema name", pgstore.Options{Schema: "pg_flux"}, "reserved"},
		{"NUL in schema name", pgstore.Options{Schema: "a\x00b"}, "NUL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := pgstore.Open(t.Context(), "postgres://nobody@127.0.0.1:1/none?sslmode=disable", &c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "Options.Schema") {
				t.Fatalf("err = %v, want one about Options.Schema saying %q", err, c.want)
			}
		})
	}
}

func TestOpenReportsAnUnreachableServer(t *testing.T) {
	t.Parallel()
	// Port 1 on the loopback: nothing listens there, so the connection is
	// refused at once. No test server is needed.
	_, err := pgstore.Open(t.Context(), "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=5", nil)
	if !errors.Is(err, flux.ErrStoreUnavailable) || !strings.Contains(err.Error(), "cannot connect to PostgreSQL") {
		t.Fatalf("err = %v, want flux.ErrStoreUnavailable saying it cannot connect", err)
	}
	if _, err := pgstore.New(t.Context(), nil, nil); err == nil {
		t.Fatal("New with a nil pool succeeded")
	}
}

// PostgreSQL's jsonb cannot hold \u0000; such payloads and snapshots
// still round trip exactly, and stay queryable with U+FFFD in its place.
// (Unpaired surrogates are refused by flux.ValidateAppend on every backend.)
func TestJSONThatJSONBCannotHold(t *testing.T) {
	t.Parallel()
	s := openTest(t, nil)
	ctx := t.Context()
	payload := `{"note":"x\u0000y","ok":"\ud83d\ude80","escaped":"\\u0000"}`
	e := event("Odd", payload)
	_, err := s.Append(ctx, flux.AppendRequest{
		Streams:   []flux.StreamAppend{streamOf("odd", flux.NoStream, e, event("Plain", `{"a": 1}`))},
		Snapshots: []flux.SnapshotWrite{{Snapshot: flux.Snapshot{StreamID: "odd", AggregateType: "Thing", Version: 2, SchemaVersion: 1, Data: []byte(payload), CreatedAt: time.Now()}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	recs := readStream(t, s, "odd")
	if len(recs) != 2 || string(recs[0].Payload) != payload {
		t.Fatalf("payload = %q, want exactly %q", recs[0].Payload, payload)
	}
	sn, ok, err := s.LoadSnapshot(ctx, "odd", flux.SnapshotQuery{SchemaVersion: 1})
	if err != nil || !ok || string(sn.Data) != payload {
		t.Fatalf("snapshot = %q, %v, %v; want exactly %q", sn.Data, ok, err, payload)
	}
	var note string
	err = s.Pool().QueryRow(ctx, `SELECT payload->>'note' FROM `+pgx.Identifier{s.Schema(), "events"}.Sanitize()+` WHERE event_id = $1`, e.EventID).Scan(&note)
	if err != nil || note != "x\uFFFDy" {
		t.Fatalf("jsonb payload->>'note' = %q, %v; want x\\uFFFDy", note, err)
	}
}

// Text PostgreSQL cannot store (NUL, invalid UTF-8) in names, metadata and
// keys is refused before any I/O, with flux.ErrInvalidAppend.
func TestTextPostgreSQLCannotStore(t *testing.T) {
	t.Parallel()
	s := openTest(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // validation must happen before any I/O
	withMeta := func(m flux.Metadata) flux.EventData {
		e := event("E", `{}`)
		e.Metadata = m
		return e
	}
	cases := []struct {
		name string
		req  flux.AppendRequest
	}{
		{"NUL in an event name", flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("s", flux.Any, event("E\x00", `{}`))}}},
		{"NUL in an aggregate type", flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: "s", AggregateType: "T\x00", Expected: flux.Any, Events: []flux.EventData{event("E", `{}`)}}}}},
		{"NUL in a correlation ID", flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("s", flux.Any, withMeta(flux.Metadata{CorrelationID: "c\x00"}))}}},
		{"invalid UTF-8 in a request ID", flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("s", flux.Any, withMeta(flux.Metadata{RequestID: "r\xff"}))}}},
		{"NUL in an extra metadata value", flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("s", flux.Any, withMeta(flux.Metadata{Extra: map[string]string{"k": "v\x00"}}))}}},
		{"NUL in an idempotency key", flux.AppendRequest{Idempotency: &flux.IdempotencyRecord{Key: "k\x00", CreatedAt: time.Now()}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Append(ctx, c.req)
			// The core rejects most of these first (control characters,
			// NUL, invalid UTF-8); pgstore backs it up. Either way: typed.
			if !errors.Is(err, flux.ErrInvalidAppend) {
				t.Fatalf("err = %v, want flux.ErrInvalidAppend", err)
			}
		})
	}
}

// Reads run in pages; results must not depend on where pages end.
func TestReadsAcrossPages(t *testing.T) {
	t.Parallel()
	s := openTest(t, nil)
	ctx := t.Context()
	const n = 5300 // pages of 1000, then 4000, then the rest
	for from := 0; from < n; from += 1000 {
		evs := make([]flux.EventData, min(1000, n-from))
		for i := range evs {
			evs[i] = event("E", `{}`)
		}
		if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{
			streamOf("long", flux.ExpectedVersion(from), evs...),
			streamOf(fmt.Sprintf("short-%d", from), flux.NoStream, event("S", `{}`)),
		}}); err != nil {
			t.Fatal(err)
		}
	}
	collect := func(seq func(yield func(flux.Record, error) bool)) (versions, positions []int64) {
		for r, err := range seq {
			if err != nil {
				t.Fatal(err)
			}
			versions = append(versions, r.StreamVersion)
			positions = append(positions, r.Position)
		}
		return versions, positions
	}
	contiguous := func(what string, got []int64, first int64, count int) {
		t.Helper()
		if len(got) != count {
			t.Fatalf("%s: %d records, want %d", what, len(got), count)
		}
		for i, v := range got {
			if v != first+int64(i) {
				t.Fatalf("%s: record %d is %d, want %d", what, i, v, first+int64(i))
			}
		}
	}
	vs, _ := collect(s.ReadStream(ctx, "long", flux.ReadStreamOptions{}))
	contiguous("whole stream", vs, 1, n)
	vs, _ = collect(s.ReadStream(ctx, "long", flux.ReadStreamOptions{FromVersion: 990, ToVersion: 5010}))
	contiguous("version window across pages", vs, 990, 5010-990+1)
	_, ps := collect(s.ReadAll(ctx, flux.ReadAllOptions{}))
	contiguous("whole log", ps, 1, n+(n+999)/1000)
	_, ps = collect(s.ReadAll(ctx, flux.ReadAllOptions{After: 500, Limit: 4700}))
	contiguous("log window with a limit", ps, 501, 4700)
	names := 0
	for r, err := range s.ReadAll(ctx, flux.ReadAllOptions{EventNames: []string{"S"}, Limit: 4}) {
		if err != nil || r.EventName != "S" {
			t.Fatalf("filtered read: %+v, %v", r, err)
		}
		names++
	}
	if names != 4 {
		t.Fatalf("filtered read with limit 4 returned %d", names)
	}

	// Breaking out mid-page releases the connection: the pool still works.
	for i := 0; i < 20; i++ {
		k := 0
		for _, err := range s.ReadStream(ctx, "long", flux.ReadStreamOptions{}) {
			if err != nil {
				t.Fatal(err)
			}
			if k++; k == 1500 {
				break
			}
		}
	}
	if head, err := s.Head(ctx); err != nil || head != int64(n+(n+999)/1000) {
		t.Fatalf("head = %d, %v", head, err)
	}
}

// A conflict found by the unique constraint names the stream that lost,
// not just the first of the append.
func TestUniqueViolationNamesTheStream(t *testing.T) {
	t.Parallel()
	s := openTest(t, nil)
	ctx := t.Context()
	if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("b", flux.NoStream, event("E", `{}`), event("E", `{}`))}}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{
		streamOf("a", flux.NoStream, event("E", `{}`)),
		streamOf("b", flux.NoStream, event("E", `{}`)),
	}})
	var ce *flux.ConflictError
	if !errors.As(err, &ce) || ce.StreamID != "b" || ce.Expected != flux.NoStream || ce.Actual != 2 {
		t.Fatalf("err = %v, want a conflict on b (expected no stream, actual 2)", err)
	}
	if recs := readStream(t, s, "a"); len(recs) != 0 {
		t.Fatal("the failed append wrote stream a")
	}
	// Re-appending an event ID that is stored already is refused as such.
	e := event("E", `{}`)
	if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("c", flux.NoStream, e)}}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("d", flux.NoStream, e)}})
	if !errors.Is(err, flux.ErrInvalidAppend) || !strings.Contains(err.Error(), "event ID is already stored") {
		t.Fatalf("err = %v, want flux.ErrInvalidAppend about the event ID", err)
	}
}

func TestSchemasAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := openTest(t, nil), openTest(t, nil)
	if _, err := a.Append(t.Context(), flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("s", flux.NoStream, event("E", `{}`))}}); err != nil {
		t.Fatal(err)
	}
	if head, err := b.Head(t.Context()); err != nil || head != 0 {
		t.Fatalf("head of the other schema = %d, %v", head, err)
	}
	if _, err := b.Append(t.Context(), flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("s", flux.NoStream, event("E", `{}`))}}); err != nil {
		t.Fatalf("same stream in another schema: %v", err)
	}
}

func TestMaxEventSizeOption(t *testing.T) {
	t.Parallel()
	s := openTest(t, &pgstore.Options{MaxEventSize: 100})
	ctx := t.Context()
	if _, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("s", flux.NoStream, event("E", `"`+strings.Repeat("x", 98)+`"`))}}); err != nil {
		t.Fatalf("event at the limit: %v", err)
	}
	_, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{streamOf("s", flux.Any, event("Big", `"`+strings.Repeat("x", 99)+`"`))}})
	var tooLarge *flux.EventTooLargeError
	if !errors.As(err, &tooLarge) || tooLarge.Limit != 100 || tooLarge.Size != 101 {
		t.Fatalf("err = %v, want *flux.EventTooLargeError with limit 100", err)
	}
}

// flux.Any appends after whatever is there: racing appends to one stream
// all succeed, in some order, without a conflict or a hole.
func TestAnyNeverConflicts(t *testing.T) {
	t.Parallel()
	s := openTest(t, nil)
	const writers, each = 8, 30
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				_, err := s.Append(t.Context(), flux.AppendRequest{Streams: []flux.StreamAppend{
					streamOf("shared", flux.Any, event("E", `{}`), event("E", `{}`)),
					streamOf(fmt.Sprintf("own-%d", w), flux.Any, event("E", `{}`)),
				}})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append with flux.Any: %v", err)
	}
	recs := readStream(t, s, "shared")
	if len(recs) != 2*writers*each {
		t.Fatalf("shared stream has %d events, want %d", len(recs), 2*writers*each)
	}
	for i, r := range recs {
		if r.StreamVersion != int64(i+1) {
			t.Fatalf("record %d has version %d", i, r.StreamVersion)
		}
	}
}

func TestNoPersonalDataInClear(t *testing.T) {
	testDSN(t)
	piitest.Run(t, piitest.Harness{
		New: func(t *testing.T) flux.EventStore { return openTest(t, nil) },
		Dump: func(t *testing.T, es flux.EventStore) []byte {
			return dumpSchema(t, es.(*pgstore.Store))
		},
	})
}

// dumpSchema returns every row of every table of the store's schema, as
// text.
func dumpSchema(t *testing.T, s *pgstore.Store) []byte {
	t.Helper()
	ctx := t.Context()
	rows, err := s.Pool().Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, s.Schema())
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, table := range tables {
		rows, err := s.Pool().Query(ctx, `SELECT t::text FROM `+pgx.Identifier{s.Schema(), table}.Sanitize()+` AS t`)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range lines {
			fmt.Fprintf(&b, "%s: %s\n", table, line)
		}
	}
	return []byte(b.String())
}

// Valid JSON that PostgreSQL's jsonb cannot represent (a number beyond
// numeric's range) is refused with flux.ErrInvalidAppend, and nothing of
// the append is written.
func TestJSONBeyondJSONBRange(t *testing.T) {
	t.Parallel()
	s := openTest(t, nil)
	_, err := s.Append(t.Context(), flux.AppendRequest{Streams: []flux.StreamAppend{
		streamOf("fine", flux.NoStream, event("E", `{}`)),
		streamOf("huge", flux.NoStream, event("E", `{"n":1e1000000}`)),
	}})
	if !errors.Is(err, flux.ErrInvalidAppend) || !strings.Contains(err.Error(), `stream "huge"`) || !strings.Contains(err.Error(), "nothing was committed") {
		t.Fatalf("err = %v, want flux.ErrInvalidAppend naming stream huge and saying nothing was committed", err)
	}
	if recs := readAll(t, s); len(recs) != 0 {
		t.Fatalf("%d events written by a refused append", len(recs))
	}
	if head, err := s.Head(t.Context()); err != nil || head != 0 {
		t.Fatalf("head = %d, %v; the refused append must not use up positions", head, err)
	}
}
