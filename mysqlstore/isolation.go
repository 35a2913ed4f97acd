package mysqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// Isolation levels.
//
// The store's reads are single autocommit statements and its appends
// serialise on the log-head row (see Append); both are correct at READ
// COMMITTED and above. At READ UNCOMMITTED a read sees the rows of appends
// that have not committed: a subscription could take a position from an
// append that then rolls back, move past it, and never deliver the event
// committed there later. A DSN can set that level for every session
// (transaction_isolation, or tx_isolation on MariaDB before 11.1 and MySQL
// 5.7), and so can the server's global default.
//
// Open therefore pins every session of both its pools to REPEATABLE READ,
// InnoDB's default and the level the store is tested at, whatever the DSN
// or the server's default say: the connector runs SET SESSION TRANSACTION
// ISOLATION LEVEL REPEATABLE READ on each new connection, after the
// driver has applied the DSN's parameters. New cannot change the sessions
// of a pool it was given, so it checks one and refuses a pool at READ
// UNCOMMITTED.

// sessionIsolation is the statement every connection Open makes runs first.
const sessionIsolation = "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"

// isolatedConnector is a driver.Connector whose connections run
// sessionIsolation before they are used.
type isolatedConnector struct {
	driver.Connector
}

func (c isolatedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		conn.Close()
		return nil, errors.New("mysqlstore: the driver's connection cannot execute statements")
	}
	if _, err := ex.ExecContext(ctx, sessionIsolation, nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mysqlstore: pin the session's isolation level to REPEATABLE READ: %w", err)
	}
	return conn, nil
}

// openPool opens a pool whose sessions are pinned to REPEATABLE READ.
func openPool(cfg *mysql.Config) (*sql.DB, error) {
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: DSN: %w", err)
	}
	return sql.OpenDB(isolatedConnector{connector}), nil
}

// isolationLevel reads the session's isolation level through db, as the
// server spells it (READ-COMMITTED, REPEATABLE-READ, ...): the variable is
// transaction_isolation on MySQL 8 and MariaDB 11.1+, tx_isolation before.
func isolationLevel(ctx context.Context, db *sql.DB) (string, error) {
	var level string
	err := db.QueryRowContext(ctx, `SELECT @@SESSION.transaction_isolation`).Scan(&level)
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) && myErr.Number == errUnknownSystemVariable {
		err = db.QueryRowContext(ctx, `SELECT @@SESSION.tx_isolation`).Scan(&level)
	}
	return strings.ToUpper(level), err
}

// errUnknownSystemVariable is ER_UNKNOWN_SYSTEM_VARIABLE.
const errUnknownSystemVariable = 1193
