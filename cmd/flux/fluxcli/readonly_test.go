package fluxcli

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// readOnlyCommands are the commands that must not write, with the stock
// configuration (no registry) and the application's.
func readOnlyCommands() [][]string {
	return [][]string{
		{"streams"},
		{"streams", "--json", "--type", "User"},
		{"events"},
		{"events", "--stream", bobID, "--json"},
		{"events", "--type", "UserSignedUp"},
		{"state", "User", bobID},
		{"state", "BudgetEnvelope", tripID, "--version", "1", "--diff", "now"},
		{"trace", "demo-00000000-05"},
		{"projections"},
		{"projections", "status", "--json"},
		{"snapshots"},
	}
}

// storeState describes everything a command could change: the SQLite
// files' checksums, or the tables of the schema (database) and their row
// counts.
func storeState(t *testing.T, dsn string) string {
	t.Helper()
	if !isPostgres(dsn) && !isMySQL(dsn) {
		dir := filepath.Dir(dsn)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case strings.HasSuffix(e.Name(), "-shm"):
				// A reader of a WAL database shares its index in the
				// -shm file, which SQLite may create: not the database.
			case strings.HasSuffix(e.Name(), "-wal"):
				if len(data) > 0 {
					fmt.Fprintf(&b, "%s %x\n", e.Name(), sha256.Sum256(data))
				}
			default:
				fmt.Fprintf(&b, "%s %x\n", e.Name(), sha256.Sum256(data))
			}
		}
		return b.String()
	}
	ctx := context.Background()
	var db *sql.DB
	var query string
	var arg []any
	if isPostgres(dsn) {
		conn, schema, err := splitSchema(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if db, err = sql.Open("pgx", conn); err != nil {
			t.Fatal(err)
		}
		query, arg = `SELECT table_name FROM information_schema.tables WHERE table_schema = $1`, []any{schema}
	} else {
		var err error
		if db, err = sql.Open("mysql", strings.TrimPrefix(dsn, "mysql://")); err != nil {
			t.Fatal(err)
		}
		query = `SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()`
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, query, arg...)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	sort.Strings(tables)
	var b strings.Builder
	for _, name := range tables {
		qualified := name
		if isPostgres(dsn) {
			_, schema, _ := splitSchema(dsn)
			qualified = schema + "." + name
		}
		var n int64
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+qualified).Scan(&n); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %d\n", name, n)
	}
	return b.String()
}

// runReadOnly runs every read-only command on dsn, with and without the
// application's registry, and fails if the store changed.
func runReadOnly(t *testing.T, dsn string, wantErr string) {
	t.Helper()
	before := storeState(t, dsn)
	for _, withApp := range []bool{false, true} {
		for _, args := range readOnlyCommands() {
			m, _, errOut := testMain()
			if !withApp {
				m.Config = Config{}
			}
			m.Getenv = func(k string) string {
				return map[string]string{"FLUX_DSN": dsn, "KEY_MANAGEMENT_SECRET": demoSecret}[k]
			}
			code := m.Run(context.Background(), args)
			if wantErr != "" && (code == 0 || !strings.Contains(errOut.String(), wantErr)) {
				t.Errorf("flux %s (application %v): exit %d, stderr %q; want an error saying %q", strings.Join(args, " "), withApp, code, errOut, wantErr)
			}
			if after := storeState(t, dsn); after != before {
				t.Fatalf("flux %s (application %v) changed the store:\nbefore:\n%s\nafter:\n%s", strings.Join(args, " "), withApp, before, after)
			}
		}
	}
}

// TestReadOnlyCommandsNeverWrite pins that read-only commands leave the
// store as it was: the SQLite files byte for byte (also a file nobody may
// write), the tables of a PostgreSQL schema and a MySQL database and their
// rows; and that on a store without the schema they say to run flux
// migrate, creating nothing.
func TestReadOnlyCommandsNeverWrite(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		db := fixture(t)
		runReadOnly(t, db, "")
		if err := os.Chmod(db, 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Dir(db), 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(filepath.Dir(db), 0o755) })
		runReadOnly(t, db, "")
	})
	t.Run("sqlite_not_migrated", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other.db")
		odb, err := sql.Open("sqlite", "file:"+other)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := odb.Exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"); err != nil {
			t.Fatal(err)
		}
		odb.Close()
		runReadOnly(t, other, "run 'flux migrate'")
		empty := filepath.Join(t.TempDir(), "empty.db")
		if err := os.WriteFile(empty, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		runReadOnly(t, empty, "run 'flux migrate'")
	})
	for _, srv := range testServers(t) {
		t.Run(srv.name, func(t *testing.T) {
			dsn := demoStore(t, srv)
			runReadOnly(t, dsn, "")
			if srv.name == "mysql" { // go-sql-driver's own form too
				runReadOnly(t, strings.TrimPrefix(dsn, "mysql://"), "")
			}
		})
		t.Run(srv.name+"_not_migrated", func(t *testing.T) {
			runReadOnly(t, srv.fresh(t), "run 'flux migrate'")
		})
		t.Run(srv.name+"_older_schema", func(t *testing.T) {
			dsn := srv.fresh(t)
			m, _, errOut := testMain()
			if code := m.Run(context.Background(), []string{"migrate", "--dsn", dsn}); code != 0 {
				t.Fatalf("migrate: %s", errOut)
			}
			// Forget the last step, as if the schema came from an older build.
			driver, conn, table := "mysql", strings.TrimPrefix(dsn, "mysql://"), "flux_schema_migrations"
			if isPostgres(dsn) {
				c, schema, err := splitSchema(dsn)
				if err != nil {
					t.Fatal(err)
				}
				driver, conn, table = "pgx", c, schema+".flux_schema_migrations"
			}
			db, err := sql.Open(driver, conn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var top int
			if err := db.QueryRow("SELECT MAX(version) FROM " + table).Scan(&top); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(fmt.Sprintf("DELETE FROM %s WHERE version = %d", table, top)); err != nil {
				t.Fatal(err)
			}
			runReadOnly(t, dsn, "run 'flux migrate'")
		})
	}
}

func TestDSNForms(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://app@db:5432/events":          "postgres",
		"postgresql://app@db/events?sslmode=off": "postgres",
		"mysql://app:pw@tcp(db:3306)/events":     "mysql",
		"app:pw@tcp(db:3306)/events":             "mysql",
		"root@tcp(127.0.0.1:3306)/test?x=y":      "mysql",
		"app@unix(/run/mysqld.sock)/events":      "mysql",
		"flux.db":                                "sqlite",
		"sqlite:/var/lib/flux.db":                "sqlite",
		"db.example.com:5432/app":                "sqlite",
	} {
		kind := ""
		for _, o := range openers {
			if o.matches(dsn) {
				kind = o.kind
				break
			}
		}
		if kind != want {
			t.Errorf("%s is read as %s, want %s", dsn, kind, want)
		}
	}
	// Not an existing file and no server form: the error lists the forms.
	_, err := openBackend(context.Background(), "db.example.com:5432/app", readOnly)
	if err == nil || !strings.Contains(err.Error(), "postgres://") || !strings.Contains(err.Error(), "@tcp(host:3306)/db") {
		t.Fatalf("err = %v", err)
	}
}
