package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/examples/budget"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

// DefaultDSN is the store used without --dsn or FLUX_DSN: a SQLite file in
// the current directory.
const DefaultDSN = "flux.db"

// store is what the commands need of a backend: every contract interface.
type store interface {
	flux.EventStore
	flux.SnapshotStore
	flux.Inspector
	flux.IdempotencyStore
	pii.KeyStore
	projection.CheckpointStore
}

// backend is an opened store.
type backend struct {
	kind  string // sqlite, postgres, mysql
	where string // file or server, for messages (no password)
	store store
	// db is a database/sql pool on the store's database, for read models.
	db *sql.DB
	// schema qualifies read-model tables (PostgreSQL), "" otherwise.
	schema string
	// closers run on Close, after the store.
	closers []func() error
}

func (b *backend) balanceStore() (budget.BalanceStore, error) {
	if b.db == nil {
		return budget.NewMemoryBalances(), nil
	}
	return newSQLBalances(context.Background(), b.db, b.kind, b.schema)
}

// opener opens one kind of backend; registered per backend in backend_*.go.
type opener struct {
	kind    string
	matches func(dsn string) bool
	open    func(ctx context.Context, dsn string, create bool) (*backend, error)
}

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

// openBackend opens the store named by dsn. Without create, a SQLite file
// must exist already (so a typo does not make an empty database).
func openBackend(ctx context.Context, dsn string, create bool) (*backend, error) {
	for _, o := range openers {
		if o.matches(dsn) {
			return o.open(ctx, dsn, create)
		}
	}
	return nil, fmt.Errorf("no backend for DSN %q", dsn)
}

func openSQLite(ctx context.Context, dsn string, create bool) (*backend, error) {
	path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite://"), "sqlite:")
	if !create {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no event store at %s; run 'flux migrate' to create one, or pass --dsn (or FLUX_DSN)", path)
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
	return &backend{kind: "sqlite", where: path, store: s, db: db, closers: []func() error{db.Close}}, nil
}

func (b *backend) Close() error {
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
