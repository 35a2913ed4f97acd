package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

var (
	_ projection.TxStore[pgx.Tx] = (*Store)(nil)
	_ projection.Waker           = (*Store)(nil)
)

// ProjectTx implements projection.TxStore: fn writes the read model in the
// same PostgreSQL transaction that moves the checkpoint, so a projection
// whose read model lives in this database applies every event exactly
// once. The checkpoint row is locked first, so a second runner of the same
// projection waits and then fails with a *projection.CheckpointBehindError
// (projection.ErrCheckpointMoved) instead of running fn.
//
// fn runs with the store's schema first on the transaction's search_path
// (SET LOCAL), so unqualified names in its statements find read-model
// tables created beside the store's tables; other schemas of the path stay
// visible behind it.
func (s *Store) ProjectTx(ctx context.Context, from int64, cp projection.Checkpoint, fn func(ctx context.Context, tx pgx.Tx) error) error {
	if s.closed.Load() {
		return flux.ErrStoreClosed
	}
	op := fmt.Sprintf("project %q", cp.Name)
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(ctx, op, err, nothingCommitted)
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1 || ', ' || current_setting('search_path'), true)`, s.q.schema); err != nil {
		return s.fail(ctx, op, err, nothingCommitted)
	}
	if err := moveCheckpoint(ctx, tx, s.q.table("projection_checkpoints"), from, cp); err != nil {
		if behind, ok := errors.AsType[*projection.CheckpointBehindError](err); ok {
			return behind
		}
		return s.fail(ctx, op, err, nothingCommitted)
	}
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return s.commitFailed(ctx, op, err, outcomeUnknown)
	}
	return nil
}

// pgExec is a pool or a transaction.
type pgExec interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// moveCheckpoint moves cp.Name from position from (0: none stored) to
// cp.Position in one conditional statement, or returns a
// *projection.CheckpointBehindError telling where it is stored. A
// concurrent mover holding the row makes the statement wait for its
// commit and then find the row moved.
func moveCheckpoint(ctx context.Context, ex pgExec, table string, from int64, cp projection.Checkpoint) error {
	var (
		tag pgconn.CommandTag
		err error
	)
	if from == 0 {
		tag, err = ex.Exec(ctx, `INSERT INTO `+table+` AS c (name, position, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at
			WHERE c.position = 0`, cp.Name, cp.Position, flux.NormalizeTime(cp.UpdatedAt))
	} else {
		tag, err = ex.Exec(ctx, `UPDATE `+table+` SET position = $1, updated_at = $2 WHERE name = $3 AND position = $4`,
			cp.Position, flux.NormalizeTime(cp.UpdatedAt), cp.Name, from)
	}
	if err != nil || tag.RowsAffected() == 1 {
		return err
	}
	var stored int64
	err = ex.QueryRow(ctx, `SELECT position FROM `+table+` WHERE name = $1`, cp.Name).Scan(&stored)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	return &projection.CheckpointBehindError{Name: cp.Name, Supersedes: from, Position: cp.Position, Stored: stored}
}

// Wake implements projection.Waker through LISTEN/NOTIFY: every append
// sends a NOTIFY on the schema's channel, which PostgreSQL delivers when
// the append commits, to every store listening on that schema in any
// process. One connection per Store (opened by the first Wake, outside the
// pool) listens and fans out to every channel Wake returned; appends of
// this Store also signal directly. Signals are hints: they are coalesced,
// and a lost listening connection is re-established with backoff (waking
// every subscriber once, since notifications may have been missed
// meanwhile).
//
// Wake returns an error matching flux.ErrStoreUnavailable when the
// listening connection cannot be established, and ctx's error if ctx ends
// while it waits for it.
func (s *Store) Wake(ctx context.Context) (<-chan struct{}, error) {
	if s.closed.Load() {
		return nil, flux.ErrStoreClosed
	}
	if err := s.listen.ensure(ctx); err != nil {
		return nil, err
	}
	return s.appended.Subscribe(ctx), nil
}

// listener owns the LISTEN connection of one Store.
type listener struct {
	store *Store

	mu      sync.Mutex
	running bool
	stopped bool
	up      bool         // LISTEN is active
	waiters []chan error // Wake calls waiting for the current attempt
	cancel  context.CancelFunc
	done    chan struct{}
}

// ensure starts the listener if needed and returns once LISTEN is active,
// or with the error of the next connection attempt.
func (l *listener) ensure(ctx context.Context) error {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return flux.ErrStoreClosed
	}
	if l.up {
		l.mu.Unlock()
		return nil
	}
	ch := make(chan error, 1)
	l.waiters = append(l.waiters, ch)
	if !l.running {
		l.running = true
		lctx, cancel := context.WithCancel(context.Background())
		l.cancel, l.done = cancel, make(chan struct{})
		go l.run(lctx)
	}
	l.mu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("pgstore: wake: waiting for LISTEN: %w", ctx.Err())
	}
}

// report records the outcome of a connection attempt and answers waiters.
func (l *listener) report(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.up = err == nil
	for _, ch := range l.waiters {
		ch <- err
	}
	l.waiters = nil
}

func (l *listener) stop() {
	l.mu.Lock()
	l.stopped = true
	running, cancel, done := l.running, l.cancel, l.done
	l.mu.Unlock()
	if running {
		cancel()
		<-done
	}
	l.report(flux.ErrStoreClosed)
}

const (
	listenMinBackoff = 100 * time.Millisecond
	listenMaxBackoff = 5 * time.Second
)

func (l *listener) run(ctx context.Context) {
	defer close(l.done)
	s := l.store
	log := s.opts.Logger
	backoff := listenMinBackoff
	for {
		conn, err := l.connect(ctx)
		if ctx.Err() != nil {
			if conn != nil {
				conn.Close(context.Background())
			}
			return
		}
		l.report(err)
		if err == nil {
			backoff = listenMinBackoff
			err = l.receive(ctx, conn)
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			conn.Close(cctx)
			cancel()
			l.report(errListenLost)
			if ctx.Err() != nil {
				return
			}
			// Notifications may have been missed while the connection was
			// down: wake every subscriber so it polls.
			s.appended.Signal()
			log.Warn("pgstore: LISTEN connection lost; reconnecting", "schema", s.opts.Schema, "err", err)
		} else {
			log.Warn("pgstore: LISTEN connection failed; retrying", "schema", s.opts.Schema, "err", err, "backoff", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, listenMaxBackoff)
	}
}

var errListenLost = fmt.Errorf("%w: pgstore: the LISTEN connection was lost; reconnecting", flux.ErrStoreUnavailable)

// connect opens the dedicated connection (the pool's settings, outside the
// pool) and LISTENs on the schema's channel.
func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	s := l.store
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cfg := s.pool.Config().ConnConfig
	// Waiting for a notification is no statement the server could cancel:
	// when ctx ends, drop the connection at once.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, interpretError(cctx, "wake: listen", err, "")
	}
	if _, err := conn.Exec(cctx, `LISTEN `+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, interpretError(cctx, "wake: listen", err, "")
	}
	return conn, nil
}

// receive fans notifications out until the connection fails or ctx ends.
func (l *listener) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		l.store.appended.Signal()
	}
}
