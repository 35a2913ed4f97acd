package fluxcli

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/fluxcapacitor/flux/mysqlstore"
	"github.com/fluxcapacitor/flux/pgstore"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/stdlib"
)

func init() {
	openers = append([]opener{
		{kind: "postgres", matches: isPostgres, open: openPostgres},
		{kind: "mysql", matches: isMySQL, open: openMySQL},
	}, openers...)
	scratchers["postgres"] = postgresScratch
	scratchers["mysql"] = mysqlScratch
}

func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// isMySQL recognises mysql:// URLs and go-sql-driver's own form,
// user[:password]@tcp(host:port)/db (also unix(...)).
func isMySQL(dsn string) bool {
	if strings.HasPrefix(dsn, "mysql://") {
		return true
	}
	return goMySQLDSN.MatchString(dsn)
}

var goMySQLDSN = regexp.MustCompile(`^[^/]*@(tcp|tcp6|unix)\([^)]*\)/`)

// splitSchema takes the flux_schema parameter (the PostgreSQL schema of
// the store, default public) out of a PostgreSQL DSN.
func splitSchema(dsn string) (string, string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", "", fmt.Errorf("bad PostgreSQL DSN: %v", redact(err.Error()))
	}
	q := u.Query()
	schema := q.Get("flux_schema")
	q.Del("flux_schema")
	u.RawQuery = q.Encode()
	return u.String(), schema, nil
}

// where describes a server DSN without its password.
func where(kind, dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Host != "" {
		return fmt.Sprintf("%s%s", u.Host, u.Path)
	}
	if cfg, err := mysql.ParseDSN(dsn); err == nil {
		return cfg.Addr + "/" + cfg.DBName
	}
	return kind
}

func redact(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		if j := strings.Index(s[i:], "@"); j >= 0 {
			return s[:i+3] + "…" + s[i+j:]
		}
	}
	return s
}

func openPostgres(ctx context.Context, dsn string, mode access) (*Backend, error) {
	conn, schema, err := splitSchema(dsn)
	if err != nil {
		return nil, err
	}
	s, err := pgstore.Open(ctx, conn, &pgstore.Options{Schema: schema, SkipMigrate: mode != create})
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDBFromPool(s.Pool())
	b := &Backend{kind: "postgres", where: where("postgres", conn) + " (schema " + s.Schema() + ")", store: s, db: db, schema: s.Schema(), closers: []func() error{db.Close}}
	if mode != create {
		if err := checkMigrated(ctx, b, s, "PostgreSQL "+b.where); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

func openMySQL(ctx context.Context, dsn string, mode access) (*Backend, error) {
	conn := strings.TrimPrefix(dsn, "mysql://")
	s, err := mysqlstore.Open(ctx, conn, &mysqlstore.Options{SkipMigrate: mode != create})
	if err != nil {
		return nil, err
	}
	b := &Backend{kind: "mysql", where: where("mysql", conn), store: s, db: s.DB()}
	if mode != create {
		if err := checkMigrated(ctx, b, s, "MySQL "+b.where); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// postgresScratch makes a temporary schema in the DSN's database.
func postgresScratch(ctx context.Context, dsn string) (*scratch, error) {
	conn, _, err := splitSchema(dsn)
	if err != nil {
		return nil, err
	}
	schema := randomName("flux_bench_")
	s, err := pgstore.Open(ctx, conn, &pgstore.Options{Schema: schema})
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDBFromPool(s.Pool())
	b := &Backend{kind: "postgres", where: where("postgres", conn) + " (schema " + schema + ")", store: s, db: db, schema: schema}
	raw := &pgxRaw{pool: s.Pool(), table: schema + ".events"}
	return &scratch{backend: b, raw: raw, cleanup: func() {
		_, _ = s.Pool().Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		db.Close()
		s.Close()
	}}, nil
}

// mysqlScratch makes a temporary database on the DSN's server.
func mysqlScratch(ctx context.Context, dsn string) (*scratch, error) {
	cfg, err := mysql.ParseDSN(strings.TrimPrefix(dsn, "mysql://"))
	if err != nil {
		return nil, fmt.Errorf("bad MySQL DSN: %v", err)
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	name := randomName("flux_bench_")
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4"); err != nil {
		return nil, fmt.Errorf("create a scratch database: %w", err)
	}
	drop := func() {
		if a, err := sql.Open("mysql", cfg.FormatDSN()); err == nil {
			_, _ = a.Exec("DROP DATABASE " + name)
			a.Close()
		}
	}
	cfg.DBName = name
	s, err := mysqlstore.Open(ctx, cfg.FormatDSN(), nil)
	if err != nil {
		drop()
		return nil, err
	}
	b := &Backend{kind: "mysql", where: cfg.Addr + "/" + name, store: s, db: s.DB()}
	raw := &sqlRaw{db: s.DB(), table: "events", dialect: "mysql"}
	return &scratch{backend: b, raw: raw, cleanup: func() { s.Close(); drop() }}, nil
}

// checkMigrated fails with "run flux migrate" unless the store's schema is
// current; it writes nothing.
func checkMigrated(ctx context.Context, b *Backend, s interface {
	SchemaVersion(context.Context) (int, int, error)
}, what string) error {
	current, latest, err := s.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("check the schema of %s: %w", b.where, err)
	}
	if current < latest {
		return errNotMigrated(what)
	}
	return nil
}
