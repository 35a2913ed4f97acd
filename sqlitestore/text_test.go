package sqlitestore_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

// sqlite3CLI runs the sqlite3 command-line shell on path. It skips the test
// when the shell is not installed, unless FLUX_TEST_REQUIRE is set (.ci/run
// installs it).
func sqlite3CLI(t *testing.T, path string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("sqlite3")
	if err != nil {
		if os.Getenv("FLUX_TEST_REQUIRE") != "" {
			t.Fatal("the sqlite3 command-line shell is not installed and FLUX_TEST_REQUIRE is set: install it (apt-get install sqlite3)")
		}
		t.Skip("the sqlite3 command-line shell is not installed")
	}
	cmd := exec.Command(bin, append([]string{"-bail", path}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sqlite3 %s %q: %v: %s", path, args, err, stderr.String())
	}
	return string(out)
}

// rawDB opens path without the store, to look at storage classes.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func queryInt(t *testing.T, db *sql.DB, q string) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// jsonColumns are the columns holding JSON, and how many BLOBs the
// schema-2 fixture has in each.
var jsonColumns = []struct {
	table, column string
	fixtureBlobs  int64
}{
	{"events", "payload", 41},
	{"events", "metadata", 0},
	{"aggregate_snapshots", "data", 0},
	{"idempotency_keys", "result", 4},
}

// blobCount counts the rows of table.column stored as BLOB.
func blobCount(t *testing.T, db *sql.DB, table, column string) int64 {
	t.Helper()
	return queryInt(t, db, fmt.Sprintf(`SELECT count(*) FROM %s WHERE typeof(%s) = 'blob'`, table, column))
}

// TestJSONIsStoredAsText writes every kind of JSON the store keeps and
// reads it with the sqlite3 shell the way an operator would: .dump shows
// string literals, not X'...' hex, and json_extract reads the values.
func TestJSONIsStoredAsText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "flux.db")
	s, err := sqlitestore.Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	_, err = s.Append(t.Context(), flux.AppendRequest{
		Idempotency: &flux.IdempotencyRecord{Key: "cmd-1", Result: []byte(`{"id":"acc-1","ok":true}`), CreatedAt: at},
		Streams: []flux.StreamAppend{{StreamID: "acc-1", AggregateType: "Account", Expected: flux.NoStream,
			Events: []flux.EventData{{EventID: ids.New(), EventName: "Deposited", EventVersion: 1,
				Payload: []byte(`{"amount":42,"memo":"Zoë's dépôt"}`), OccurredAt: at,
				Metadata: flux.Metadata{Extra: map[string]string{"tenant": "acme"}}}}}},
		Snapshots: []flux.SnapshotWrite{{Snapshot: flux.Snapshot{StreamID: "acc-1", AggregateType: "Account",
			Version: 1, SchemaVersion: 1, Data: []byte(`{"balance":42}`), CreatedAt: at}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// An empty result is TEXT too, and reads back empty.
	_, err = s.Append(t.Context(), flux.AppendRequest{
		Idempotency: &flux.IdempotencyRecord{Key: "cmd-2", CreatedAt: at},
		Streams: []flux.StreamAppend{{StreamID: "acc-2", AggregateType: "Account", Expected: flux.NoStream,
			Events: []flux.EventData{{EventID: ids.New(), EventName: "Opened", EventVersion: 1, Payload: []byte(`{}`), OccurredAt: at}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rec, ok, err := s.LookupIdempotency(t.Context(), "cmd-2"); err != nil || !ok || len(rec.Result) != 0 {
		t.Fatalf("empty idempotency result: %q %v %v", rec.Result, ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	db := rawDB(t, path)
	for _, c := range jsonColumns {
		if n := blobCount(t, db, c.table, c.column); n != 0 {
			t.Errorf("%s.%s: %d rows stored as BLOB, want TEXT", c.table, c.column, n)
		}
	}

	dump := sqlite3CLI(t, path, ".dump")
	for _, want := range []string{
		`'{"amount":42,"memo":"Zoë''s dépôt"}'`,
		`'{"tenant":"acme"}'`,
		`'{"balance":42}'`,
		`'{"id":"acc-1","ok":true}'`,
	} {
		if !strings.Contains(dump, want) {
			t.Errorf(".dump does not show %s as text:\n%s", want, dump)
		}
	}
	if strings.Contains(dump, "X'") {
		t.Errorf(".dump has BLOB literals:\n%s", dump)
	}
	for q, want := range map[string]string{
		`SELECT json_extract(payload, '$.amount') FROM events WHERE aggregate_id = 'acc-1'`:         "42",
		`SELECT json_extract(payload, '$.memo') FROM events WHERE aggregate_id = 'acc-1'`:           "Zoë's dépôt",
		`SELECT json_extract(metadata, '$.tenant') FROM events WHERE aggregate_id = 'acc-1'`:        "acme",
		`SELECT json_extract(data, '$.balance') FROM aggregate_snapshots`:                           "42",
		`SELECT json_extract(result, '$.id') FROM idempotency_keys WHERE idempotency_key = 'cmd-1'`: "acc-1",
		`SELECT type FROM pragma_table_info('idempotency_keys') WHERE name = 'result'`:              "TEXT",
	} {
		if got := strings.TrimSpace(sqlite3CLI(t, path, q)); got != want {
			t.Errorf("%s: got %q, want %q", q, got, want)
		}
	}
}

// golden is the shape testdata/schema2gen writes: what the version that
// wrote testdata/schema2.db read back from it.
type golden struct {
	Records     []flux.Record
	Snapshots   []flux.Snapshot
	Idempotency []flux.IdempotencyRecord
	Keys        []pii.StoredKey
	Forgotten   []pii.Forgetting
	Checkpoints []projection.Checkpoint
}

// readGolden reads from s what schema2gen read when it wrote the fixture.
func readGolden(t *testing.T, s *sqlitestore.Store) golden {
	t.Helper()
	ctx := t.Context()
	var g golden
	for r, err := range s.ReadAll(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		g.Records = append(g.Records, r)
	}
	for _, id := range []string{"acc-1", "acc-2"} {
		for _, sv := range []int{1, 2} {
			for _, max := range []int64{0, 20} {
				sn, ok, err := s.LoadSnapshot(ctx, id, flux.SnapshotQuery{SchemaVersion: sv, MaxVersion: max})
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					g.Snapshots = append(g.Snapshots, sn)
				}
			}
		}
	}
	for _, k := range []string{"cmd-object", "cmd-null", "cmd-empty", "cmd-unicode"} {
		rec, ok, err := s.LookupIdempotency(ctx, k)
		if err != nil || !ok {
			t.Fatalf("idempotency key %s: found %v, %v", k, ok, err)
		}
		g.Idempotency = append(g.Idempotency, rec)
	}
	k, err := s.LoadKey(ctx, "user-1")
	if err != nil {
		t.Fatal(err)
	}
	g.Keys = append(g.Keys, k)
	f, _, err := s.Forgotten(ctx, "user-2")
	if err != nil {
		t.Fatal(err)
	}
	g.Forgotten = append(g.Forgotten, f)
	if g.Checkpoints, err = s.ListCheckpoints(ctx); err != nil {
		t.Fatal(err)
	}
	return g
}

// copyFixture copies testdata/schema2.db, a database written at schema
// version 2 by the version before JSON was bound as TEXT.
func copyFixture(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("testdata/schema2.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "schema2.db")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMigrateSchema2Fixture upgrades a database the previous version wrote:
// every JSON value ends up TEXT, everything reads back exactly as that
// version read it, and a read model's own BLOBs are left alone.
func TestMigrateSchema2Fixture(t *testing.T) {
	path := copyFixture(t)
	want, err := os.ReadFile("testdata/schema2.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	if v := queryInt(t, db, `PRAGMA user_version`); v != 2 {
		t.Fatalf("fixture at schema version %d, want 2", v)
	}
	for _, c := range jsonColumns {
		if n := blobCount(t, db, c.table, c.column); n != c.fixtureBlobs {
			t.Fatalf("fixture: %s.%s has %d BLOBs, want %d", c.table, c.column, n, c.fixtureBlobs)
		}
	}

	s, err := sqlitestore.Open(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := s.Migrated()
	wantConverted := map[string]int64{"events.payload": 41, "idempotency_keys.result": 4}
	if m.From != 2 || m.To != 3 || fmt.Sprint(m.Converted) != fmt.Sprint(wantConverted) {
		t.Errorf("Migrated() = %+v, want from 2 to 3 converting %v", m, wantConverted)
	}
	if v := queryInt(t, db, `PRAGMA user_version`); v != 3 {
		t.Errorf("schema version %d after Open, want 3", v)
	}
	for _, c := range jsonColumns {
		if n := blobCount(t, db, c.table, c.column); n != 0 {
			t.Errorf("%s.%s: %d rows still BLOB after migrating", c.table, c.column, n)
		}
	}
	if n := queryInt(t, db, `SELECT count(*) FROM balances WHERE typeof(raw) = 'blob'`); n != 1 {
		t.Errorf("the read model's BLOB column was changed: %d BLOBs left, want 1", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM idempotency_keys`); n != 4 {
		t.Errorf("%d idempotency keys after rebuilding the table, want 4", n)
	}

	got, err := json.MarshalIndent(readGolden(t, s), "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	if got = append(got, '\n'); !bytes.Equal(got, want) {
		t.Errorf("the migrated database reads back differently from what the version that wrote it read:\n%s", firstDiff(got, want))
	}

	// Again: nothing left to do, and the constraint on keys still holds.
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if m2 := s.Migrated(); fmt.Sprint(m2) != fmt.Sprint(m) {
		t.Errorf("a second Migrate changed the report: %+v, was %+v", m2, m)
	}
	_, err = s.Append(t.Context(), flux.AppendRequest{
		Idempotency: &flux.IdempotencyRecord{Key: "cmd-object", Result: []byte(`{}`), CreatedAt: time.Now()},
		Streams: []flux.StreamAppend{{StreamID: "x", AggregateType: "X", Expected: flux.NoStream,
			Events: []flux.EventData{{EventID: ids.New(), EventName: "E", EventVersion: 1, Payload: []byte(`{}`), OccurredAt: time.Now()}}}},
	})
	var ie *flux.IdempotencyError
	if !errors.As(err, &ie) || string(ie.Record.Result) != `{"id":"acc-1","balance":100}` {
		t.Errorf("reusing a migrated idempotency key: %v, want the first result", err)
	}

	if out := strings.TrimSpace(sqlite3CLI(t, path, `SELECT count(*) FROM events WHERE json_valid(payload)`)); out != "41" {
		t.Errorf("json_valid(payload) holds for %s events after migrating, want 41", out)
	}
}

// A migration that fails part way leaves the database as it was.
func TestMigrateFailureChangesNothing(t *testing.T) {
	path := copyFixture(t)
	db := rawDB(t, path)
	// The rebuild of idempotency_keys, the step's last statement, fails.
	if _, err := db.Exec(`CREATE TABLE idempotency_keys_v3 (x)`); err != nil {
		t.Fatal(err)
	}
	_, err := sqlitestore.Open(t.Context(), path, nil)
	if err == nil || !strings.Contains(err.Error(), "from version 2 to 3") || !strings.Contains(err.Error(), "the database is unchanged") {
		t.Fatalf("Open: %v, want a migration error from version 2 to 3 saying the database is unchanged", err)
	}
	if v := queryInt(t, db, `PRAGMA user_version`); v != 2 {
		t.Errorf("schema version %d after a failed migration, want 2", v)
	}
	for _, c := range jsonColumns {
		if n := blobCount(t, db, c.table, c.column); n != c.fixtureBlobs {
			t.Errorf("%s.%s: %d BLOBs after a failed migration, want %d", c.table, c.column, n, c.fixtureBlobs)
		}
	}
}

// firstDiff shows where got and want part.
func firstDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := max(0, i-200)
	return fmt.Sprintf("got  ...%s\nwant ...%s", got[from:min(len(got), i+200)], want[from:min(len(want), i+200)])
}

// JSON is bound without a copy (text.go): SQLite must have its own copy
// once Append returns, so a caller reusing its buffers changes nothing
// stored.
func TestTextArgumentsAreCopiedByTheDriver(t *testing.T) {
	s := openTemp(t, nil)
	payload := []byte(`{"amount":1}`)
	data := []byte(`{"balance":1}`)
	result := []byte(`{"ok":1}`)
	at := time.Now()
	_, err := s.Append(t.Context(), flux.AppendRequest{
		Idempotency: &flux.IdempotencyRecord{Key: "k", Result: result, CreatedAt: at},
		Streams: []flux.StreamAppend{{StreamID: "s", AggregateType: "T", Expected: flux.NoStream,
			Events: []flux.EventData{{EventID: ids.New(), EventName: "E", EventVersion: 1, Payload: payload, OccurredAt: at}}}},
		Snapshots: []flux.SnapshotWrite{{Snapshot: flux.Snapshot{StreamID: "s", AggregateType: "T", Version: 1, SchemaVersion: 1, Data: data, CreatedAt: at}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{payload, data, result} {
		copy(b, bytes.Repeat([]byte("9"), len(b)))
	}
	var got []string
	for r, err := range s.ReadStream(t.Context(), "s", flux.ReadStreamOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(r.Payload))
	}
	sn, _, err := s.LoadSnapshot(t.Context(), "s", flux.SnapshotQuery{SchemaVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := s.LookupIdempotency(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, string(sn.Data), string(rec.Result))
	if want := []string{`{"amount":1}`, `{"balance":1}`, `{"ok":1}`}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stored %q after the caller reused its buffers, want %q", got, want)
	}
}
