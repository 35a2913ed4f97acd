package fluxcli

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// schema2Copy copies the sqlitestore fixture written at schema version 2,
// when event payloads and idempotency results were stored as BLOBs.
func schema2Copy(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "sqlitestore", "testdata", "schema2.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "old.db")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func runFlux(t *testing.T, args ...string) string {
	t.Helper()
	m, out, errOut := testMain()
	if code := m.Run(context.Background(), args); code != 0 {
		t.Fatalf("flux %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return strings.TrimSpace(out.String())
}

func TestMigrateUpgradesBlobJSONToText(t *testing.T) {
	path := schema2Copy(t)
	got := runFlux(t, "migrate", "--dsn", path)
	want := "sqlite event store at " + path + ": schema upgraded from version 2 to 3; JSON values converted from BLOB to TEXT: 41 in events.payload, 4 in idempotency_keys.result"
	if got != want {
		t.Errorf("flux migrate:\n got %s\nwant %s", got, want)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var blobs, version int
	if err := db.QueryRow(`SELECT (SELECT count(*) FROM events WHERE typeof(payload) = 'blob')
		+ (SELECT count(*) FROM idempotency_keys WHERE typeof(result) = 'blob')
		+ (SELECT count(*) FROM aggregate_snapshots WHERE typeof(data) = 'blob')`).Scan(&blobs); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if blobs != 0 || version != 3 {
		t.Errorf("after flux migrate: %d BLOB rows, schema version %d; want 0 and 3", blobs, version)
	}
	if got := runFlux(t, "migrate", "--dsn", path); got != "sqlite event store at "+path+": schema is up to date" {
		t.Errorf("flux migrate a second time: %s", got)
	}

	path = schema2Copy(t)
	got = runFlux(t, "migrate", "--dsn", path, "--json")
	want = `{"backend":"sqlite","converted":{"events.payload":41,"idempotency_keys.result":4},"from_version":2,"schema":"upgraded","store":"` + path + `","to_version":3}`
	if got != want {
		t.Errorf("flux migrate --json:\n got %s\nwant %s", got, want)
	}
}

func TestMigrateCreatesStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new.db")
	if got, want := runFlux(t, "migrate", "--dsn", path), "sqlite event store at "+path+": created at schema version 3"; got != want {
		t.Errorf("flux migrate on a new file:\n got %s\nwant %s", got, want)
	}
}
