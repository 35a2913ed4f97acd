package mysqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"time"
)

// migrationFiles holds the schema steps, applied in file-name order; the
// table flux_schema_migrations records which ran. Never edit a step that
// has shipped: add a new file. Every statement must be safe to run again
// (CREATE TABLE IF NOT EXISTS, upserts), because MySQL commits DDL
// statement by statement: a step interrupted half-way is re-run whole.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version    int
	name       string
	statements []string
}

// migrations parses the embedded steps. The files are part of the binary,
// so an error here is a build defect that every test catches.
func migrations() ([]migration, error) {
	entries, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	slices.Sort(entries)
	var out []migration
	for i, name := range entries {
		text, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		base := path.Base(name)
		var version int
		if _, err := fmt.Sscanf(base, "%03d_", &version); err != nil || version != i+1 {
			return nil, fmt.Errorf("mysqlstore: migration %s: want number %03d", base, i+1)
		}
		out = append(out, migration{version: version, name: strings.TrimSuffix(base, ".sql"), statements: splitStatements(string(text))})
	}
	return out, nil
}

// splitStatements splits a migration file into statements: whole-line
// comments are dropped and a statement ends with a semicolon at the end of
// a line. (The driver runs without multiStatements.)
func splitStatements(text string) []string {
	var out []string
	var cur strings.Builder
	for line := range strings.Lines(text) {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// identifierCollations are tried in order for stream IDs, names and keys:
// binary and NO PAD, so comparisons are exact byte comparisons (a trailing
// space makes another stream). MariaDB has utf8mb4_nopad_bin, MySQL 8
// utf8mb4_0900_bin; utf8mb4_bin (PAD SPACE) is the fallback elsewhere.
var identifierCollations = []string{"utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin"}

// migrateLockWait bounds how long Migrate waits for another process's
// migration when ctx has no deadline.
const migrateLockWait = 2 * time.Minute

// Migrate brings the schema up to date: it creates the tables on first use
// and applies the steps this build knows and the database has not seen.
// Open and New call it unless Options.SkipMigrate is set. Calling it again
// is harmless, and so is calling it from several processes at once: they
// take turns on a named lock (see below) and skip the steps already
// recorded. It fails if the database was migrated by a newer build, and
// if tables named like flux's exist in another layout (for example the
// PHP library's events table without event_id).
func (s *Store) Migrate(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed()
	}
	steps, err := migrations()
	if err != nil {
		return err
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return s.writeError(ctx, "migrate", err)
	}
	defer conn.Close()

	// MySQL DDL is not transactional (each CREATE TABLE commits), so no
	// row lock can cover a migration: a session-level named lock is the
	// right tool here. (Appends must never use one: a named lock is not
	// released by a rollback and is not tied to the commit, which is
	// exactly what the log head needs; see Append.) The name is per
	// database, so stores in different databases never wait for each other.
	var dbName sql.NullString
	if err := conn.QueryRowContext(ctx, `SELECT DATABASE()`).Scan(&dbName); err != nil {
		return s.writeError(ctx, "migrate", err)
	}
	if !dbName.Valid || dbName.String == "" {
		return errors.New("mysqlstore: migrate: the connection has no default database; name one in the DSN (user@tcp(host:3306)/dbname)")
	}
	sum := sha256.Sum256([]byte(dbName.String))
	lockName := "flux_migrate_" + hex.EncodeToString(sum[:16])
	deadline := time.Now().Add(migrateLockWait)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	for {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, 1)`, lockName).Scan(&got); err != nil {
			return s.writeError(ctx, "migrate", err)
		}
		if got.Valid && got.Int64 == 1 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: mysqlstore: migrate %s: another process has held the migration lock for too long; retry", errUnavailable, dbName.String)
		}
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT RELEASE_LOCK(?)`, lockName)

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS flux_schema_migrations (
		version    INT          NOT NULL,
		name       VARCHAR(255) NOT NULL,
		applied_at DATETIME(6)  NOT NULL,
		PRIMARY KEY (version)
	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`); err != nil {
		return s.writeError(ctx, "migrate", err)
	}
	var current int
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM flux_schema_migrations`).Scan(&current); err != nil {
		return s.writeError(ctx, "migrate", err)
	}
	if current > len(steps) {
		return fmt.Errorf("mysqlstore: database %s has schema version %d, newer than this build knows (%d); upgrade FluxCapacitor", dbName.String, current, len(steps))
	}
	if current < len(steps) {
		collation, err := pickCollation(ctx, conn)
		if err != nil {
			return s.writeError(ctx, "migrate", err)
		}
		for _, m := range steps[current:] {
			for _, stmt := range m.statements {
				if _, err := conn.ExecContext(ctx, strings.ReplaceAll(stmt, "{{collate}}", collation)); err != nil {
					return s.writeError(ctx, fmt.Sprintf("migrate %s to version %d (%s)", dbName.String, m.version, m.name), err)
				}
			}
			if _, err := conn.ExecContext(ctx, `INSERT INTO flux_schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, formatTime(time.Now())); err != nil {
				return s.writeError(ctx, "migrate", err)
			}
		}
	}
	return s.checkLayout(ctx, conn, dbName.String)
}

func pickCollation(ctx context.Context, conn *sql.Conn) (string, error) {
	rows, err := conn.QueryContext(ctx, `SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN (?, ?, ?)`,
		identifierCollations[0], identifierCollations[1], identifierCollations[2])
	if err != nil {
		return "", err
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return "", err
		}
		have[name] = true
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	for _, c := range identifierCollations {
		if have[c] {
			return c, nil
		}
	}
	return "", errors.New("the server has no utf8mb4 binary collation; FluxCapacitor needs MySQL 8 or MariaDB 10.3 or later")
}

// requiredColumns lists, per table, the columns flux reads and writes. A
// table created by CREATE TABLE IF NOT EXISTS is left alone when it
// already exists, so checkLayout catches tables in another layout.
var requiredColumns = map[string][]string{
	"events": {"id", "event_id", "aggregate_id", "aggregate_type", "event_name", "event_version", "payload", "metadata",
		"occurred_on", "request_id", "correlation_id", "causation_id", "version"},
	"flux_log_head":          {"id", "position"},
	"aggregate_snapshots":    {"aggregate_id", "aggregate_type", "version", "schema_version", "data", "created_at"},
	"encryption_keys":        {"user_id", "encryption_key", "created_at", "updated_at"},
	"forgotten_subjects":     {"user_id", "forgotten_at", "forgotten_by", "reason"},
	"idempotency_keys":       {"idempotency_key", "result", "created_at"},
	"projection_checkpoints": {"name", "position", "updated_at"},
}

func (s *Store) checkLayout(ctx context.Context, conn *sql.Conn, dbName string) error {
	rows, err := conn.QueryContext(ctx, `SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()`)
	if err != nil {
		return s.writeError(ctx, "migrate: check table layout", err)
	}
	defer rows.Close()
	have := map[string]map[string]bool{}
	for rows.Next() {
		var table, column string
		if err := rows.Scan(&table, &column); err != nil {
			return s.writeError(ctx, "migrate: check table layout", err)
		}
		if have[table] == nil {
			have[table] = map[string]bool{}
		}
		have[table][strings.ToLower(column)] = true
	}
	if err := rows.Err(); err != nil {
		return s.writeError(ctx, "migrate: check table layout", err)
	}
	var errs []error
	for _, table := range slices.Sorted(maps.Keys(requiredColumns)) {
		var missing []string
		for _, c := range requiredColumns[table] {
			if !have[table][c] {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			errs = append(errs, fmt.Errorf("mysqlstore: table %s.%s lacks column(s) %s: it was created by another program (the PHP library?); add the columns as in mysqlstore/migrations or move the table aside",
				dbName, table, strings.Join(missing, ", ")))
		}
	}
	return errors.Join(errs...)
}

// SchemaVersion reports the schema version recorded in the database (0
// when it was never migrated) and the version this build migrates to,
// without writing anything: a tool that must not migrate tells the user
// to when current < latest.
func (s *Store) SchemaVersion(ctx context.Context) (current, latest int, err error) {
	steps, err := migrations()
	if err != nil {
		return 0, 0, err
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'flux_schema_migrations'`).Scan(&n); err != nil {
		return 0, 0, fmt.Errorf("mysqlstore: read the schema version: %w", err)
	}
	if n > 0 {
		if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM flux_schema_migrations`).Scan(&current); err != nil {
			return 0, 0, fmt.Errorf("mysqlstore: read the schema version: %w", err)
		}
	}
	return current, len(steps), nil
}
