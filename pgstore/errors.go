package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/fluxcapacitor/flux"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
)

// SQLSTATE codes the store acts on.
const (
	uniqueViolation = "23505"
	queryCanceled   = "57014"
	undefinedTable  = "42P01"

	serializationFailure = "40001"
	deadlockDetected     = "40P01"
	lockNotAvailable     = "55P03"
)

// beginReadCommitted starts every transaction of the store. The log-head
// design (see Append) needs READ COMMITTED: a waiting append must read the
// head as the append before it committed it. At REPEATABLE READ or
// SERIALIZABLE — a session default that hardened servers and roles set
// with default_transaction_isolation — the waiting append fails with a
// serialization failure instead. Reads are single statements, which see
// one snapshot at every level.
const beginReadCommitted = "BEGIN ISOLATION LEVEL READ COMMITTED"

// What became of a failed write, as the error message states it.
const (
	nothingCommitted = "nothing was committed"
	outcomeUnknown   = "the outcome is unknown: the connection broke after the write (or its COMMIT) was sent, so it may have been committed; check before retrying"
)

// fail is how every method reports an error of the database: the store's
// closed state first, then interpretError. For a write, outcome says what
// became of it (nothingCommitted or outcomeUnknown); reads pass "".
func (s *Store) fail(ctx context.Context, op string, err error, outcome string) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return fmt.Errorf("pgstore: %s: %w", op, flux.ErrStoreClosed)
	}
	var pgErr *pgconn.PgError
	if s.ownPool && errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "57P") {
		// The server announced a shutdown: every idle connection of the
		// pool is dead too, so drop them and let the next operation dial.
		s.pool.Reset()
	}
	return interpretError(ctx, op, err, outcome)
}

// interpretError is the one place that translates driver errors into what
// callers see:
//
//   - a done context (pgx cancels the statement, PostgreSQL answers 57014
//     query_canceled, or the connection is dropped) gives an error matching
//     ctx.Err(): context.Canceled or context.DeadlineExceeded;
//   - a lost connection (server shutdown 57P01-57P03, class 08, EOF, reset,
//     network errors, pgconn.SafeToRetry) or an unreachable server gives an
//     error matching flux.ErrStoreUnavailable that says so;
//   - a serialization failure (40001), deadlock (40P01) or lock that
//     could not be taken (55P03) gives an error matching flux.ErrTransient,
//     which RetryOnConflict retries;
//   - a pool closed under the store gives flux.ErrStoreClosed.
//
// Conflicts and duplicate keys (unique violations) are recognised by the
// callers, which know the stream or key; everything else keeps the
// *pgconn.PgError in its chain.
func interpretError(ctx context.Context, op string, err error, outcome string) error {
	if err == nil {
		return nil
	}
	after := ""
	if outcome != "" {
		after = "; " + outcome
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("pgstore: %s: %w%s: %w", op, ctxErr, after, err)
	}
	if errors.Is(err, puddle.ErrClosedPool) {
		return fmt.Errorf("pgstore: %s: the connection pool was closed: %w", op, flux.ErrStoreClosed)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		code := pgErr.Code
		switch {
		case code == "57P01" || code == "57P02" || code == "57P05" || strings.HasPrefix(code, "08"):
			return fmt.Errorf("%w: pgstore: %s: lost the connection to PostgreSQL (%s)%s; retry later: %w",
				flux.ErrStoreUnavailable, op, pgErr.Message, after, err)
		case code == "57P03" || strings.HasPrefix(code, "53") || strings.HasPrefix(code, "58"):
			// Starting up or shutting down, out of connections, disk or
			// memory, I/O error.
			return fmt.Errorf("%w: pgstore: %s: PostgreSQL cannot serve requests now (%s)%s; retry later: %w",
				flux.ErrStoreUnavailable, op, pgErr.Message, after, err)
		case code == serializationFailure || code == deadlockDetected || code == lockNotAvailable:
			return fmt.Errorf("%w: pgstore: %s: PostgreSQL aborted the transaction (%s)%s; run it again: %w",
				flux.ErrTransient, op, pgErr.Message, after, err)
		case code == queryCanceled:
			return fmt.Errorf("pgstore: %s: the server cancelled the statement (statement_timeout or an administrator)%s: %w", op, after, err)
		case code == undefinedTable:
			return fmt.Errorf("pgstore: %s: %w%s; is the schema migrated? Run Store.Migrate (Options.SkipMigrate skips it)", op, err, after)
		}
		return fmt.Errorf("pgstore: %s: %w%s", op, err, after)
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return fmt.Errorf("%w: pgstore: %s: cannot connect to PostgreSQL%s; retry later: %w", flux.ErrStoreUnavailable, op, after, err)
	}
	if lostConnection(err) {
		return fmt.Errorf("%w: pgstore: %s: lost the connection to PostgreSQL%s; retry later: %w", flux.ErrStoreUnavailable, op, after, err)
	}
	return fmt.Errorf("pgstore: %s: %w%s", op, err, after)
}

// lostConnection reports whether err says the connection to the server is
// gone or unusable, as opposed to an error the server reported.
func lostConnection(err error) bool {
	var netErr net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, pgconn.ErrConnClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, syscall.EPIPE),
		errors.As(err, &netErr),
		pgconn.Timeout(err), pgconn.SafeToRetry(err):
		return true
	}
	return false
}

// readCommitted is every transaction's options: see beginReadCommitted.
var readCommitted = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// begin starts a transaction at READ COMMITTED. A pooled connection that the server closed
// while it sat idle (a server restart, an idle-session timeout) fails on
// first use, and pgxpool checks only connections idle for over a second;
// begin then tries again on another connection, since nothing has run yet.
func (s *Store) begin(ctx context.Context) (pgx.Tx, error) {
	tx, err := s.pool.BeginTx(ctx, readCommitted)
	for retries := s.staleRetries(); err != nil && retries > 0 && s.stale(ctx, err); retries-- {
		tx, err = s.pool.BeginTx(ctx, readCommitted)
	}
	return tx, err
}

// staleRetries is how many times an operation that failed on a dead pooled
// connection before doing anything is retried: enough to get past every
// idle connection of the pool to a new one.
func (s *Store) staleRetries() int { return int(s.pool.Config().MaxConns) + 1 }

// stale reports whether err is a dead connection found on first use, and
// resets a pool the store owns when the server announced its shutdown.
func (s *Store) stale(ctx context.Context, err error) bool {
	if ctx.Err() != nil || s.closed.Load() {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if !strings.HasPrefix(pgErr.Code, "57P") || pgErr.Code == "57P03" {
			return false // 57P03: the server is still starting or stopping
		}
		if s.ownPool {
			s.pool.Reset()
		}
		return true
	}
	var connectErr *pgconn.ConnectError
	return !errors.As(err, &connectErr) && lostConnection(err)
}
