package backend

import (
	"strconv"

	"github.com/fluxcapacitor/flux"
)

// Placeholder returns the SQL placeholder for the n-th argument (from 1)
// of a statement in a database's dialect.
type Placeholder func(n int) string

// Question is the placeholder of SQLite and MySQL: "?".
func Question(int) string { return "?" }

// Dollar is the placeholder of PostgreSQL: "$1", "$2", ...
func Dollar(n int) string { return "$" + strconv.Itoa(n) }

// ListStreamsQuery builds the query that flux.Inspector.ListStreams runs
// against an events table with the standard columns (aggregate_id,
// aggregate_type, version, occurred_on). Its rows are, in order, the
// stream ID, aggregate type, last version, first and last event time,
// ordered by stream ID. events is the table's name as the dialect writes
// it (quoted or schema-qualified as needed).
func ListStreamsQuery(events string, opts flux.ListStreamsOptions, ph Placeholder) (string, []any) {
	args := []any{opts.After}
	query := `SELECT aggregate_id, MIN(aggregate_type), MAX(version), MIN(occurred_on), MAX(occurred_on) FROM ` + events + ` WHERE aggregate_id > ` + ph(1)
	if opts.AggregateType != "" {
		args = append(args, opts.AggregateType)
		query += ` AND aggregate_type = ` + ph(len(args))
	}
	query += ` GROUP BY aggregate_id ORDER BY aggregate_id`
	if opts.Limit > 0 {
		args = append(args, opts.Limit)
		query += ` LIMIT ` + ph(len(args))
	}
	return query, args
}
