package fluxcli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/fluxcapacitor/flux/examples/budget"
)

// sqlBalances keeps the envelope-balances read model in a table of the
// event store's own database. Put keeps a view only when its version is
// newer than the stored one, so replaying events into it is harmless.
type sqlBalances struct {
	db      *sql.DB
	dialect string // sqlite, postgres, mysql
	schema  string // qualifies the table on PostgreSQL; "" otherwise
	name    string // the table, unqualified
}

const balancesTableName = "budget_envelope_balances"

// newSQLBalances opens the read model, creating its table if needed.
func newSQLBalances(ctx context.Context, db *sql.DB, dialect, schema string) (*sqlBalances, error) {
	s := &sqlBalances{db: db, dialect: dialect, schema: schema, name: balancesTableName}
	if err := s.create(ctx, "CREATE TABLE IF NOT EXISTS "); err != nil {
		return nil, err
	}
	return s, nil
}

// table is the table's name as statements use it: schema-qualified on
// PostgreSQL.
func (s *sqlBalances) table() string {
	if s.schema == "" {
		return s.name
	}
	return s.schema + "." + s.name
}

// withTable returns the same read model kept in another table of the same
// database (which it does not create).
func (s *sqlBalances) withTable(name string) *sqlBalances {
	c := *s
	c.name = name
	return &c
}

// create runs create (CREATE TABLE, with or without IF NOT EXISTS) for the
// read model's table.
func (s *sqlBalances) create(ctx context.Context, create string) error {
	text := "TEXT"
	if s.dialect == "mysql" {
		text = "VARCHAR(255)"
	}
	_, err := s.db.ExecContext(ctx, create+s.table()+` (
		envelope_id `+text+` NOT NULL PRIMARY KEY,
		user_id `+text+` NOT NULL,
		name `+text+` NOT NULL,
		currency `+text+` NOT NULL,
		targeted_amount BIGINT NOT NULL,
		current_amount BIGINT NOT NULL,
		version BIGINT NOT NULL)`)
	if err != nil {
		return fmt.Errorf("create the %s read model: %w", s.table(), err)
	}
	return nil
}

// drop drops the table if it exists.
func (s *sqlBalances) drop(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `DROP TABLE IF EXISTS `+s.table()); err != nil {
		return fmt.Errorf("drop %s: %w", s.table(), err)
	}
	return nil
}

// q rewrites ? placeholders for PostgreSQL.
func (s *sqlBalances) q(query string) string {
	if s.dialect != "postgres" {
		return query
	}
	out, n := make([]byte, 0, len(query)+8), 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			out = append(out, fmt.Sprintf("$%d", n)...)
			continue
		}
		out = append(out, query[i])
	}
	return string(out)
}

func (s *sqlBalances) Get(ctx context.Context, id string) (budget.EnvelopeView, bool, error) {
	var v budget.EnvelopeView
	err := s.db.QueryRowContext(ctx, s.q(`SELECT envelope_id, user_id, name, currency, targeted_amount, current_amount, version FROM `+s.table()+` WHERE envelope_id = ?`), id).
		Scan(&v.EnvelopeID, &v.UserID, &v.Name, &v.Currency, &v.TargetedAmount, &v.CurrentAmount, &v.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return budget.EnvelopeView{}, false, nil
	}
	return v, err == nil, err
}

func (s *sqlBalances) Put(ctx context.Context, v budget.EnvelopeView) error {
	var query string
	switch s.dialect {
	case "mysql":
		query = `INSERT INTO ` + s.table() + ` (envelope_id, user_id, name, currency, targeted_amount, current_amount, version) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON DUPLICATE KEY UPDATE user_id = IF(VALUES(version) > version, VALUES(user_id), user_id), name = IF(VALUES(version) > version, VALUES(name), name),
			currency = IF(VALUES(version) > version, VALUES(currency), currency), targeted_amount = IF(VALUES(version) > version, VALUES(targeted_amount), targeted_amount),
			current_amount = IF(VALUES(version) > version, VALUES(current_amount), current_amount), version = GREATEST(version, VALUES(version))`
	default:
		query = `INSERT INTO ` + s.table() + ` (envelope_id, user_id, name, currency, targeted_amount, current_amount, version) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (envelope_id) DO UPDATE SET user_id = excluded.user_id, name = excluded.name, currency = excluded.currency,
			targeted_amount = excluded.targeted_amount, current_amount = excluded.current_amount, version = excluded.version
			WHERE excluded.version > ` + s.name + `.version`
	}
	_, err := s.db.ExecContext(ctx, s.q(query), v.EnvelopeID, v.UserID, v.Name, v.Currency, v.TargetedAmount, v.CurrentAmount, v.Version)
	return err
}

func (s *sqlBalances) List(ctx context.Context, userID string) ([]budget.EnvelopeView, error) {
	query := `SELECT envelope_id, user_id, name, currency, targeted_amount, current_amount, version FROM ` + s.table()
	var args []any
	if userID != "" {
		query += ` WHERE user_id = ?`
		args = append(args, userID)
	}
	rows, err := s.db.QueryContext(ctx, s.q(query+` ORDER BY user_id, name`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []budget.EnvelopeView
	for rows.Next() {
		var v budget.EnvelopeView
		if err := rows.Scan(&v.EnvelopeID, &v.UserID, &v.Name, &v.Currency, &v.TargetedAmount, &v.CurrentAmount, &v.Version); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func (s *sqlBalances) Reset(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM `+s.table())
	return err
}
