package mysqlstore_test

import (
	"database/sql"
	"strings"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/mysqlstore"
	"github.com/fluxcapacitor/flux/storetest"
	"github.com/go-sql-driver/mysql"
)

// isolationVariable is the name of the session's isolation variable on
// the test server: transaction_isolation (MySQL 8, MariaDB 11.1+) or
// tx_isolation (MariaDB before 11.1, MySQL 5.7).
func isolationVariable(t testing.TB) string {
	t.Helper()
	admin := mysqlstore.AdminDB(t, mysqlstore.ServerDSN(t))
	var level string
	if err := admin.QueryRowContext(t.Context(), `SELECT @@SESSION.transaction_isolation`).Scan(&level); err == nil {
		return "transaction_isolation"
	}
	return "tx_isolation"
}

// dsnWithIsolation returns a DSN for a new test database whose sessions
// the DSN sets to level (READ-UNCOMMITTED, SERIALIZABLE, ...).
func dsnWithIsolation(t testing.TB, level string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(mysqlstore.NewTestDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params[isolationVariable(t)] = "'" + level + "'"
	return cfg.FormatDSN()
}

// The suite on a DSN that sets READ UNCOMMITTED: Open pins the sessions it
// uses to REPEATABLE READ, so no reader sees an uncommitted append.
func TestConformanceWithReadUncommittedDSN(t *testing.T) {
	mysqlstore.AdminDB(t, mysqlstore.ServerDSN(t)) // shared by the whole binary: opened before the suite's goroutine-leak check
	storetest.Run(t, storetest.Harness{
		Short: true,
		New: func(t *testing.T) flux.EventStore {
			s, err := mysqlstore.Open(t.Context(), dsnWithIsolation(t, "READ-UNCOMMITTED"), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	})
}

// The suite on a DSN that sets SERIALIZABLE.
func TestConformanceWithSerializableDSN(t *testing.T) {
	mysqlstore.AdminDB(t, mysqlstore.ServerDSN(t)) // shared by the whole binary: opened before the suite's goroutine-leak check
	storetest.Run(t, storetest.Harness{
		Short: true,
		New: func(t *testing.T) flux.EventStore {
			s, err := mysqlstore.Open(t.Context(), dsnWithIsolation(t, "SERIALIZABLE"), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	})
}

// New cannot change the isolation of a pool the caller opened: it refuses
// one whose sessions read uncommitted data, and says how to fix it.
func TestNewRefusesReadUncommittedPool(t *testing.T) {
	cfg, err := mysql.ParseDSN(dsnWithIsolation(t, "READ-UNCOMMITTED"))
	if err != nil {
		t.Fatal(err)
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	s, err := mysqlstore.New(t.Context(), db, nil)
	if err == nil {
		s.Close()
		t.Fatal("New accepted a pool whose sessions run at READ UNCOMMITTED")
	}
	if !strings.Contains(err.Error(), "READ-UNCOMMITTED") && !strings.Contains(err.Error(), "READ UNCOMMITTED") {
		t.Fatalf("the error does not name the isolation level: %v", err)
	}
}
