package pgstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/fluxcapacitor/flux"
)

// migrationFiles holds the schema, one file per step, named
// NNNN_description.sql and applied in order. {{schema}} in a file stands for
// the store's quoted schema name. Never edit a step that has shipped:
// append a new one.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded steps in order, checking that their
// versions run 1, 2, 3, ... without a hole.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("pgstore: read embedded migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("pgstore: embedded migration %s is not named NNNN_description.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("pgstore: read embedded migration %s: %w", e.Name(), err)
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("pgstore: embedded migrations skip from version %d to %d", i, m.version)
		}
	}
	return out, nil
}

// Advisory lock classes (the first key of pg_advisory_xact_lock(int, int));
// the second key is a hash of the schema or subject.
const (
	lockClassMigrate = 0x464c584d // "FLXM"
	lockClassKeys    = 0x464c584b // "FLXK"
)

// Migrate brings the schema up to date: it creates the schema if it is
// missing, then applies every embedded step not yet recorded in the
// schema's flux_schema_migrations table, in one transaction. It holds a
// transaction-scoped advisory lock on the schema meanwhile, so concurrent
// calls (several processes starting at once) wait for each other and the
// later ones find nothing to do. Calling it again is harmless.
//
// It fails without changing anything when the schema was migrated by a
// newer version of this package, or when the role may not create the
// schema or its tables.
func (s *Store) Migrate(ctx context.Context) error {
	if s.closed.Load() {
		return flux.ErrStoreClosed
	}
	steps, err := migrations()
	if err != nil {
		return err
	}
	op := fmt.Sprintf("migrate schema %q", s.opts.Schema)
	tx, err := s.begin(ctx)
	if err != nil {
		return s.fail(ctx, op, err, nothingCommitted)
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, lockClassMigrate, s.opts.Schema); err != nil {
		return s.fail(ctx, op, err, nothingCommitted)
	}
	// CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when
	// the schema exists; look first, so a role that owns only its schema
	// can migrate too.
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, s.opts.Schema).Scan(&exists); err != nil {
		return s.fail(ctx, op, err, nothingCommitted)
	}
	if !exists {
		if _, err := tx.Exec(ctx, `CREATE SCHEMA `+s.q.schema); err != nil {
			return s.fail(ctx, op+": create schema", err, nothingCommitted)
		}
	}
	versions := s.q.table("flux_schema_migrations")
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+versions+` (
		version    INTEGER     NOT NULL PRIMARY KEY,
		name       TEXT        NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`); err != nil {
		return s.fail(ctx, op, err, nothingCommitted)
	}
	var current int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+versions).Scan(&current); err != nil {
		return s.fail(ctx, op+": read schema version", err, nothingCommitted)
	}
	if current > len(steps) {
		return fmt.Errorf("pgstore: schema %q is at version %d, newer than this build knows (%d); upgrade FluxCapacitor", s.opts.Schema, current, len(steps))
	}
	if current == len(steps) {
		return nil
	}
	for _, m := range steps[current:] {
		// Without arguments pgx uses the simple protocol, which runs the
		// file's several statements.
		if _, err := tx.Exec(ctx, strings.ReplaceAll(m.sql, "{{schema}}", s.q.schema)); err != nil {
			return s.fail(ctx, fmt.Sprintf("%s to version %d (%s)", op, m.version, m.name), err, nothingCommitted)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+versions+` (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			return s.fail(ctx, op, err, nothingCommitted)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return s.commitFailed(ctx, op, err, outcomeUnknown)
	}
	return nil
}

// SchemaVersion reports the schema version recorded in the store's schema
// (0 when it was never migrated) and the version this build migrates to,
// without writing anything: a tool that must not migrate tells the user
// to when current < latest.
func (s *Store) SchemaVersion(ctx context.Context) (current, latest int, err error) {
	steps, err := migrations()
	if err != nil {
		return 0, 0, err
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, s.q.table("flux_schema_migrations")).Scan(&exists); err != nil {
		return 0, 0, fmt.Errorf("pgstore: read the schema version of %q: %w", s.opts.Schema, err)
	}
	if exists {
		if err := s.pool.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+s.q.table("flux_schema_migrations")).Scan(&current); err != nil {
			return 0, 0, fmt.Errorf("pgstore: read the schema version of %q: %w", s.opts.Schema, err)
		}
	}
	return current, len(steps), nil
}
