package fluxcli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/examples/budget"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

// DefaultDSN is the store used without --dsn or FLUX_DSN: a SQLite file in
// the current directory.
const DefaultDSN = "flux.db"

// Store is what the commands need of a backend: every contract interface
// (all three backends implement them).
type Store interface {
	flux.EventStore
	flux.SnapshotStore
	flux.Inspector
	flux.IdempotencyStore
	pii.KeyStore
	projection.CheckpointStore
}

// Backend is an opened event store, with a database/sql pool on its
// database for read models.
type Backend struct {
	kind  string // sqlite, postgres, mysql
	where string // file or server, for messages (no password)
	store Store
	// db is a database/sql pool on the store's database, for read models.
	db *sql.DB
	// schema qualifies read-model tables (PostgreSQL), "" otherwise.
	schema string
	// clock is the command's time source.
	clock func() time.Time
	// closers run on Close, after the store.
	closers []func() error
}

func (b *Backend) balanceStore() (budget.BalanceStore, error) {
	if b.db == nil {
		return budget.NewMemoryBalances(), nil
	}
	return newSQLBalances(context.Background(), b.db, b.kind, b.schema)
}

// opener opens one kind of backend; registered per backend in backend_*.go.
type opener struct {
	kind    string
	matches func(dsn string) bool
	open    func(ctx context.Context, dsn string, mode access) (*Backend, error)
}

// access is how a command opens the store.
type access int

const (
	// readOnly writes nothing: SQLite opened read-only, no schema created
	// or upgraded, no read model created.
	readOnly access = iota
	// readWrite writes to an existing, migrated store.
	readWrite
	// create creates or upgrades the store's schema (migrate, demo).
	create
)

var openers = []opener{{
	kind:    "sqlite",
	matches: func(string) bool { return true }, // the fallback: a file path
	open:    openSQLite,
}}

// dsnOf returns the DSN chosen by flag, environment or default.
func (m *Main) dsnOf(flagValue string) string {
	switch {
	case flagValue != "":
		return flagValue
	case m.Getenv("FLUX_DSN") != "":
		return m.Getenv("FLUX_DSN")
	default:
		return DefaultDSN
	}
}

// acceptedDSNs lists the DSN forms, for errors.
const acceptedDSNs = "an existing SQLite file (flux.db, sqlite:path), postgres://user@host:5432/db (or postgresql://), mysql://user@tcp(host:3306)/db, or user@tcp(host:3306)/db"

// errNotMigrated is the advice for a store without the event store schema.
func errNotMigrated(where string) error {
	return fmt.Errorf("%s holds no FluxCapacitor event store, or one with an older schema; run 'flux migrate' (with the same --dsn) to create or upgrade it", where)
}

// openBackend opens the store named by dsn. Unless mode is create, the
// store must exist and be migrated: a typo does not make an empty
// database, and another program's database is left alone.
func openBackend(ctx context.Context, dsn string, mode access) (*Backend, error) {
	for _, o := range openers {
		if o.matches(dsn) {
			return o.open(ctx, dsn, mode)
		}
	}
	return nil, fmt.Errorf("no backend for DSN %q", dsn)
}

// sqlitePath is the file of a SQLite DSN.
func sqlitePath(dsn string) string {
	return strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite://"), "sqlite:")
}

func openSQLite(ctx context.Context, dsn string, mode access) (*Backend, error) {
	path := sqlitePath(dsn)
	if mode != create {
		fi, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no event store at %s: not an existing SQLite file; run 'flux migrate' to create one there, or give --dsn (or FLUX_DSN): %s", path, acceptedDSNs)
		}
		if err != nil {
			return nil, err
		}
		if fi.IsDir() {
			return nil, fmt.Errorf("%s is a directory, not an event store; give %s", path, acceptedDSNs)
		}
		// Check the schema without writing: a write command must not
		// migrate another program's file either.
		ro, err := sqlitestore.Open(ctx, path, &sqlitestore.Options{ReadOnly: true})
		if errors.Is(err, sqlitestore.ErrNotMigrated) {
			return nil, errNotMigrated(path)
		}
		if err != nil {
			return nil, err
		}
		if mode == readOnly {
			db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)&_pragma=query_only(ON)")
			if err != nil {
				ro.Close()
				return nil, err
			}
			return &Backend{kind: "sqlite", where: path, store: ro, db: db, closers: []func() error{db.Close}}, nil
		}
		if err := ro.Close(); err != nil {
			return nil, err
		}
	}
	s, err := sqlitestore.Open(ctx, path, nil)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		s.Close()
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return &Backend{kind: "sqlite", where: path, store: s, db: db, closers: []func() error{db.Close}}, nil
}

func (b *Backend) Close() error {
	err := b.store.Close()
	for _, c := range b.closers {
		err = errors.Join(err, c())
	}
	return err
}

// backendName is how messages name a kind of backend.
func backendName(kind string) string {
	switch kind {
	case "sqlite":
		return "embedded SQLite"
	case "postgres":
		return "PostgreSQL"
	case "mysql":
		return "MySQL/MariaDB"
	}
	return kind
}
