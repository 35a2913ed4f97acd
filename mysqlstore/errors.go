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

	"github.com/fluxcapacitor/flux"
	"github.com/go-sql-driver/mysql"
)

// errUnavailable is flux.ErrStoreUnavailable, short.
var errUnavailable = flux.ErrStoreUnavailable

func errClosed() error { return flux.ErrStoreClosed }

// MySQL and MariaDB error numbers the store acts on.
const (
	erServerShutdown     = 1053 // ER_SERVER_SHUTDOWN
	erDupEntry           = 1062 // ER_DUP_ENTRY
	erBadField           = 1054 // ER_BAD_FIELD_ERROR (unknown column)
	erNoSuchTable        = 1146 // ER_NO_SUCH_TABLE
	erNetPacketTooLarge  = 1153 // ER_NET_PACKET_TOO_LARGE
	erTooManyConnections = 1040 // ER_CON_COUNT_ERROR
	erUserConnections    = 1203 // ER_TOO_MANY_USER_CONNECTIONS
	erLockWaitTimeout    = 1205 // ER_LOCK_WAIT_TIMEOUT
	erLockDeadlock       = 1213 // ER_LOCK_DEADLOCK
	erQueryInterrupted   = 1317 // ER_QUERY_INTERRUPTED (KILL QUERY, shutdown)
	erOptionPrevents     = 1290 // ER_OPTION_PREVENTS_STATEMENT (--read-only)
	erReadOnlyMode       = 1836 // ER_READ_ONLY_MODE
	erConnectionKilled   = 1927 // ER_CONNECTION_KILLED (MariaDB)
	crServerGone         = 2006 // CR_SERVER_GONE_ERROR
	crServerLost         = 2013 // CR_SERVER_LOST
	erClientInteraction  = 4031 // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8: disconnected for inactivity)
)

func mysqlErrno(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// isConnLoss reports whether err means the connection to the server broke:
// the driver's own signals, the network's, and the server's "going away"
// errors.
func isConnLoss(err error) bool {
	if err == nil {
		return false
	}
	switch mysqlErrno(err) {
	case erServerShutdown, erConnectionKilled, crServerGone, crServerLost, erClientInteraction:
		return true
	}
	var ne net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, mysql.ErrPktSync) || errors.Is(err, mysql.ErrPktSyncMul) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrShortWrite) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.As(err, &ne)
}

// isDialFailure reports whether err is a failure to open a new connection
// (as opposed to losing one that was open).
func isDialFailure(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED)
}

// retryable reports whether an append or key transaction that failed with
// err was rolled back by InnoDB as a deadlock victim, and may simply run
// again.
func retryable(err error) bool { return mysqlErrno(err) == erLockDeadlock }

// interpretError is the one place that translates driver errors into the
// errors flux callers act on. op names the operation ("append", "read",
// "create key"); write says whether op ran in a transaction, which every
// failure below rolls back. Errors that are already flux's pass through.
//
//   - a cancelled or expired context: matches context.Canceled or
//     context.DeadlineExceeded (the caller checks ctx first, see
//     Store.writeError; the driver reports cancellation by closing the
//     connection, which would otherwise look like a lost connection);
//   - a closed pool: flux.ErrStoreClosed;
//   - a lost connection or a server shutting down: flux.ErrStoreUnavailable,
//     saying the connection was lost and, for writes, that the transaction
//     was rolled back;
//   - no connection could be opened: flux.ErrStoreUnavailable;
//   - deadlocks that survived the retries and lock wait timeouts:
//     flux.ErrTransient, which RetryOnConflict retries;
//   - too many connections, a read-only server: flux.ErrStoreUnavailable;
//   - missing tables or columns: a message saying to run Migrate.
//
// Duplicate keys are interpreted where they happen, with the context
// needed to build a *flux.ConflictError or *flux.IdempotencyError.
func interpretError(op string, write bool, err error) error {
	if err == nil {
		return nil
	}
	if isFluxError(err) {
		return err
	}
	rolledBack := ""
	if write {
		rolledBack = "; the transaction was rolled back and nothing was written"
	}
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("mysqlstore: %s: %w", op, err)
	case errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "sql: database is closed"):
		return fmt.Errorf("%w: mysqlstore: %s: %w", flux.ErrStoreClosed, op, err)
	case isDialFailure(err):
		return fmt.Errorf("%w: mysqlstore: %s: cannot connect to the database (is it running and reachable?)%s; retry later: %w",
			errUnavailable, op, rolledBack, err)
	case isConnLoss(err):
		return fmt.Errorf("%w: mysqlstore: %s: the connection to the database was lost%s; retry once it is reachable: %w",
			errUnavailable, op, rolledBack, err)
	}
	switch mysqlErrno(err) {
	case erLockDeadlock:
		return fmt.Errorf("%w: mysqlstore: %s: chosen as a deadlock victim repeatedly%s; run it again: %w", flux.ErrTransient, op, rolledBack, err)
	case erLockWaitTimeout:
		return fmt.Errorf("%w: mysqlstore: %s: timed out waiting for a row lock (innodb_lock_wait_timeout); another transaction held it, for an append usually another append holding the log head%s; run it again: %w",
			flux.ErrTransient, op, rolledBack, err)
	case erQueryInterrupted:
		return fmt.Errorf("%w: mysqlstore: %s: the statement was interrupted (KILL QUERY, or the server is shutting down)%s; retry: %w", errUnavailable, op, rolledBack, err)
	case erTooManyConnections, erUserConnections:
		return fmt.Errorf("%w: mysqlstore: %s: the server refuses more connections; lower Options.MaxOpenConns or raise max_connections: %w", errUnavailable, op, err)
	case erOptionPrevents, erReadOnlyMode:
		return fmt.Errorf("%w: mysqlstore: %s: the server is read-only (a replica, or failing over)%s: %w", errUnavailable, op, rolledBack, err)
	case erNoSuchTable, erBadField:
		return fmt.Errorf("mysqlstore: %s: the schema is missing or outdated; run Store.Migrate (or open without Options.SkipMigrate): %w", op, err)
	case erNetPacketTooLarge:
		return fmt.Errorf("mysqlstore: %s: a statement exceeded the server's max_allowed_packet%s; raise max_allowed_packet or lower Options.MaxEventSize: %w", op, rolledBack, err)
	}
	return fmt.Errorf("mysqlstore: %s: %w", op, err)
}

// writeError interprets err from a write: ErrStoreClosed after Close, the
// context's error when it is done, otherwise interpretError.
func (s *Store) writeError(ctx context.Context, op string, err error) error {
	return s.opError(ctx, op, true, err)
}

// readError is writeError for reads.
func (s *Store) readError(ctx context.Context, op string, err error) error {
	return s.opError(ctx, op, false, err)
}

func (s *Store) opError(ctx context.Context, op string, write bool, err error) error {
	if err == nil {
		return nil
	}
	if isFluxError(err) {
		return err
	}
	if s.closed.Load() {
		return flux.ErrStoreClosed
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("mysqlstore: %s: %w", op, ctxErr)
	}
	return interpretError(op, write, err)
}

// isFluxError reports whether err was already built for the caller: typed
// conflicts and duplicates, closed and unavailable stores.
func isFluxError(err error) bool {
	var (
		ce *flux.ConflictError
		ie *flux.IdempotencyError
	)
	return errors.As(err, &ce) || errors.As(err, &ie) || errors.Is(err, flux.ErrStoreClosed) ||
		errors.Is(err, flux.ErrStoreUnavailable) || errors.Is(err, flux.ErrInvalidAppend) || errors.Is(err, flux.ErrTransient)
}
