package fluxcli

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// The CLI tests on database servers use the variables of the store
// modules' tests:
//
//	FLUX_TEST_POSTGRES_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//	FLUX_TEST_MYSQL_DSN='root@tcp(127.0.0.1:3306)/test'
//
// They skip without them, unless FLUX_TEST_REQUIRE is set (CI). Every store
// is a fresh PostgreSQL schema or MySQL database, dropped when its test ends.

// server makes empty stores on one database server.
type server struct {
	name string
	// fresh returns the DSN of an empty store that is dropped when t ends.
	fresh func(t *testing.T) string
}

func testServers(t *testing.T) []server {
	var servers []server
	for _, s := range []struct{ name, env, example string }{
		{"postgres", "FLUX_TEST_POSTGRES_DSN", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"},
		{"mysql", "FLUX_TEST_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/test"},
	} {
		dsn := os.Getenv(s.env)
		if dsn == "" {
			if os.Getenv("FLUX_TEST_REQUIRE") != "" {
				t.Fatalf("%s is not set and FLUX_TEST_REQUIRE is: set it, e.g. to %s", s.env, s.example)
			}
			t.Logf("%s is not set; the %s cases are skipped (set it, e.g. to %s)", s.env, s.name, s.example)
			continue
		}
		switch s.name {
		case "postgres":
			servers = append(servers, server{s.name, func(t *testing.T) string { return freshPostgres(t, dsn) }})
		case "mysql":
			servers = append(servers, server{s.name, func(t *testing.T) string { return freshMySQL(t, dsn) }})
		}
	}
	return servers
}

// freshPostgres returns a DSN on a new schema of the server at dsn.
func freshPostgres(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("FLUX_TEST_POSTGRES_DSN: %v", err)
	}
	schema := randomName("flux_cli_test_")
	q := u.Query()
	q.Set("flux_schema", schema)
	u.RawQuery = q.Encode()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return u.String()
}

// freshMySQL returns a DSN on a new database of the server at dsn.
func freshMySQL(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("FLUX_TEST_MYSQL_DSN: %v", err)
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	name := randomName("flux_cli_test_")
	if _, err := admin.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return "mysql://" + cfg.FormatDSN()
}

// demoStore fills a fresh store on srv with the demo and returns its DSN.
func demoStore(t *testing.T, srv server) string {
	t.Helper()
	dsn := srv.fresh(t)
	m, out, errOut := testMain()
	if code := m.Run(context.Background(), []string{"demo", "--dsn", dsn}); code != 0 {
		t.Fatalf("demo on %s: exit %d: %s", srv.name, code, errOut)
	}
	// The demo tells the same story on every backend.
	want, err := os.ReadFile("testdata/demo.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got := serverNormal(normalizeDemo(out.String())); got != serverNormal(normalizeDemo(string(want))) {
		t.Fatalf("the demo on %s differs from testdata/demo.golden:\n%s", srv.name, out)
	}
	return dsn
}

// normalizeDemo drops the lines that name the store.
func normalizeDemo(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "FluxCapacitor demo on the ") || strings.HasPrefix(line, "The demo store is kept at ") || strings.HasPrefix(line, "Look inside it: ") {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// snapshotSizeRE matches the sizes of stored snapshots, which are the
// sizes of the backend's own JSON text (jsonb's has spaces).
var snapshotSizeRE = regexp.MustCompile(`\(\d+ bytes\)|(BudgetEnvelope +1 +1 +)\d+`)

// serverNormal hides what differs between backends by nature: the size of
// the stored snapshot text.
func serverNormal(s string) string {
	// On a server the demo refers to its store as "<the same DSN>", on
	// SQLite by the file's path ($DB in the golden file).
	s = strings.ReplaceAll(s, "--dsn <the same DSN>", "--dsn $DB")
	return snapshotSizeRE.ReplaceAllString(s, "${1}$$SIZE")
}

// TestCommandsOnServers runs the cases of TestCommands on PostgreSQL and
// MySQL/MariaDB and checks their output against the same golden files.
// Cases that only read share one demo store per server; a case that writes
// gets a store of its own.
func TestCommandsOnServers(t *testing.T) {
	if *update {
		t.Skip("the golden files are written from SQLite (TestCommands)")
	}
	for _, srv := range testServers(t) {
		t.Run(srv.name, func(t *testing.T) {
			shared := demoStore(t, srv)
			for _, c := range cliCases() {
				if c.sqliteOnly {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					dsn := shared
					if c.writes {
						dsn = demoStore(t, srv)
					}
					got := runCLICase(t, c, dsn)
					path := filepath.Join("testdata", "cli", c.name+".golden")
					want, err := os.ReadFile(path)
					if err != nil {
						t.Fatal(err)
					}
					if serverNormal(got) != serverNormal(string(want)) {
						t.Fatalf("output on %s differs from %s:\n--- got ---\n%s\n--- want ---\n%s", srv.name, path, got, want)
					}
				})
			}
		})
	}
}
