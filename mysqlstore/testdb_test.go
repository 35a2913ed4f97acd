package mysqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Test databases. Every test that needs a server calls NewTestDatabase,
// which creates a database of its own (flux_t_<random>) on the server
// named by FLUX_TEST_MYSQL_DSN and drops it when the test ends, so tests
// run in parallel and leave nothing behind.

// ServerDSN returns FLUX_TEST_MYSQL_DSN. Unset, the test is skipped,
// or fails when FLUX_TEST_REQUIRE is set (CI).
func ServerDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv("FLUX_TEST_MYSQL_DSN")
	if dsn == "" {
		if os.Getenv("FLUX_TEST_REQUIRE") != "" {
			t.Fatal("FLUX_TEST_MYSQL_DSN is not set, and FLUX_TEST_REQUIRE is: set it to a MySQL/MariaDB DSN such as root@tcp(127.0.0.1:3306)/test")
		}
		t.Skip("FLUX_TEST_MYSQL_DSN is not set; set it (e.g. root@tcp(127.0.0.1:3306)/test) to run the MySQL/MariaDB tests")
	}
	return dsn
}

var adminPools sync.Map // server DSN -> *sql.DB

// AdminDB returns a pool on the server named by dsn (its own database),
// shared by the tests of this binary. An unreachable server fails the test.
func AdminDB(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	if db, ok := adminPools.Load(dsn); ok {
		return db.(*sql.DB)
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("FLUX_TEST_MYSQL_DSN: %v", err)
	}
	cfg.InterpolateParams = true
	cfg.Logger = &mysql.NopLogger{}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatalf("FLUX_TEST_MYSQL_DSN: %v", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(0) // no idle connection (and its driver goroutine) outlives a test: storetest checks for leaks
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		t.Fatalf("FLUX_TEST_MYSQL_DSN is set but the server is unreachable: %v", err)
	}
	if prev, loaded := adminPools.LoadOrStore(dsn, db); loaded {
		db.Close()
		return prev.(*sql.DB)
	}
	return db
}

// NewTestDatabase creates an empty database on the test server, drops it
// in t.Cleanup, and returns a DSN naming it.
func NewTestDatabase(t testing.TB) string {
	t.Helper()
	return NewDatabaseOn(t, ServerDSN(t))
}

// NewDatabaseOn is NewTestDatabase on the server named by serverDSN.
func NewDatabaseOn(t testing.TB, serverDSN string) string {
	t.Helper()
	admin := AdminDB(t, serverDSN)
	var b [6]byte
	rand.Read(b[:])
	name := "flux_t_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	cfg, _ := mysql.ParseDSN(serverDSN)
	cfg.DBName = name
	return cfg.FormatDSN()
}
