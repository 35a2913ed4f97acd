package pgstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fluxcapacitor/flux"
	"github.com/jackc/pgx/v5"
)

// queries holds every statement with its tables qualified by the store's
// schema. They are built once per Store; pgx prepares and caches them per
// connection.
type queries struct {
	schema string // quoted

	head              string
	insertIdempotency string
	streamVersion     string
	advanceHead       string
	// insert[kind] appends one stream's events.
	insert [4]string

	upsertSnapshot       string
	pruneStreamSnapshots string

	selectEvents string
}

// table returns the qualified, quoted name of one of the store's tables.
func (q *queries) table(name string) string { return q.schema + "." + pgx.Identifier{name}.Sanitize() }

func newQueries(schema string) queries {
	q := queries{schema: pgx.Identifier{schema}.Sanitize()}
	events, headTable := q.table("events"), q.table("log_head")
	q.head = `SELECT position FROM ` + headTable
	q.insertIdempotency = `INSERT INTO ` + q.table("idempotency_keys") + ` (idempotency_key, result, created_at) VALUES ($1, $2, $3)`
	// A stream's version is read as its newest row through the (aggregate_id,
	// version) index; see the exact-version check below for why not MAX.
	currentVersion := `COALESCE((SELECT version FROM ` + events + ` WHERE aggregate_id = $1::text ORDER BY version DESC LIMIT 1), 0)`
	q.streamVersion = `SELECT ` + currentVersion

	// The first statement of an append advances the log head by the
	// append's event count and queues the NOTIFY on the schema's channel
	// (delivered by PostgreSQL at commit). It must be a statement of its
	// own: under READ COMMITTED a statement reads with the snapshot it took
	// when it began, so the version checks of a statement that had to wait
	// for the head lock would not see the append that held it.
	q.advanceHead = `WITH notify AS MATERIALIZED (SELECT pg_notify($2, ''))
	UPDATE ` + headTable + ` SET position = position + $1 FROM notify RETURNING position`

	// One INSERT per stream appends all its events from parallel arrays
	// ($4-$13). Positions count down from the log head the transaction has
	// advanced ($3 is the number of the append's events from this stream's
	// first one to the append's last); versions count up from the stream's
	// base version. The head is read in a scalar subquery rather than
	// joined, so that the generic plan's estimate is as cheap as a custom
	// plan's and PostgreSQL's plan cache stops re-planning the statement on
	// every execution (after the fifth): planning costs more than running
	// it. Each returns (rows inserted, the stream's last version, the
	// earliest time stored).
	//
	// Times follow the log: every event is stored at the later of its
	// given time and the log's last time (flux.StampTimes; the given times
	// are already a running maximum over the append), read here, after the
	// head lock, so no append can slip in between.
	lastTime := `(SELECT occurred_on FROM ` + events + ` ORDER BY id DESC LIMIT 1)`
	insert := func(base, where string) string {
		return `WITH ins AS (
	INSERT INTO ` + events + ` (id, event_id, aggregate_id, aggregate_type, event_name, event_version, payload, payload_json, metadata, occurred_on, request_id, correlation_id, causation_id, version)
	SELECT (SELECT position FROM ` + headTable + `) - $3::bigint + e.n, e.event_id::uuid, $1::text, $2::text, e.event_name, e.event_version, e.payload::jsonb, e.payload_json::json, e.metadata::jsonb, GREATEST(e.occurred_on, ` + lastTime + `), e.request_id, e.correlation_id, e.causation_id, ` + base + ` + e.n
	FROM unnest($4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[], $12::text[], $13::text[])
		WITH ORDINALITY AS e(event_id, event_name, event_version, payload, payload_json, metadata, occurred_on, request_id, correlation_id, causation_id, n)` + where + `
	RETURNING version, occurred_on)
SELECT count(*), COALESCE(MAX(version), 0), MIN(occurred_on) FROM ins`
	}
	// Any: continue from the stream's current version, read in the
	// statement (after the head lock, so it is exact).
	q.insert[kindAny] = insert(currentVersion, "")
	// No stream: from version 1; UNIQUE (aggregate_id, version) refuses a
	// stream that exists.
	q.insert[kindNoStream] = insert(`0`, "")
	// Stream exists: as Any, but only if the stream has an event.
	q.insert[kindExists] = insert(currentVersion, `
	WHERE `+currentVersion+` > 0`)
	// Exact: the INSERT itself checks that the stream is at the expected
	// version ($14), so neither a stale writer nor one expecting a version
	// the stream has not reached (which would leave a gap) inserts
	// anything. The current version is read as "ORDER BY version DESC
	// LIMIT 1", not MAX(version) or EXISTS (version = $14): under new or
	// stale statistics (a young, fast-growing table) PostgreSQL may plan
	// those as a scan of the whole stream, while this form is always one
	// step backward on the (aggregate_id, version) index.
	q.insert[kindExact] = insert(`$14::bigint`, `
	WHERE `+currentVersion+` = $14::bigint`)

	snapshots := q.table("aggregate_snapshots")
	q.upsertSnapshot = `INSERT INTO ` + snapshots + ` (aggregate_id, aggregate_type, version, schema_version, data, data_json, created_at)
	VALUES ($1::text, $2, $3::bigint, $4, $5::text::jsonb, $6::text::json, COALESCE((SELECT occurred_on FROM ` + events + ` WHERE aggregate_id = $1::text AND version = $3::bigint), $7::timestamptz))
	ON CONFLICT (aggregate_id, version) DO UPDATE SET aggregate_type = EXCLUDED.aggregate_type,
		schema_version = EXCLUDED.schema_version, data = EXCLUDED.data, data_json = EXCLUDED.data_json, created_at = EXCLUDED.created_at`
	q.pruneStreamSnapshots = `DELETE FROM ` + snapshots + ` WHERE aggregate_id = $1 AND version NOT IN
	(SELECT version FROM ` + snapshots + ` WHERE aggregate_id = $1 ORDER BY version DESC LIMIT $2)`

	q.selectEvents = `SELECT id, aggregate_id, version, aggregate_type, event_id, event_name, event_version, payload, payload_json, metadata, occurred_on, request_id, correlation_id, causation_id FROM ` + events
	return q
}

// Kinds of expected version, the second index of queries.insert.
const (
	kindAny = iota
	kindNoStream
	kindExact
	kindExists
)

// insertEvents returns the INSERT for one stream of an append and its
// arguments. fromEnd is the number of the append's events from this
// stream's first one to the append's last.
func (q *queries) insertEvents(st *flux.StreamAppend, fromEnd int) (string, []any) {
	n := len(st.Events)
	var (
		ids      = make([]string, n)
		names    = make([]string, n)
		versions = make([]int32, n)
		payloads = make([]string, n)
		exact    = make([]*string, n)
		metadata = make([]*string, n)
		times    = make([]time.Time, n)
		reqs     = make([]string, n)
		corrs    = make([]string, n)
		causes   = make([]string, n)
	)
	for i := range st.Events {
		e := &st.Events[i]
		ids[i] = e.EventID
		names[i] = e.EventName
		versions[i] = int32(e.EventVersion)
		payloads[i], exact[i] = jsonbText(e.Payload)
		metadata[i] = extraJSON(e.Metadata.Extra)
		times[i] = flux.NormalizeTime(e.OccurredAt)
		reqs[i] = requestID(e.Metadata.RequestID)
		corrs[i] = e.Metadata.CorrelationID
		causes[i] = e.Metadata.CausationID
	}
	args := make([]any, 0, 14)
	args = append(args, st.StreamID, st.AggregateType, fromEnd, ids, names, versions, payloads, exact, metadata, times, reqs, corrs, causes)
	switch {
	case st.Expected == flux.Any:
		return q.insert[kindAny], args
	case st.Expected == flux.NoStream:
		return q.insert[kindNoStream], args
	case st.Expected == flux.StreamExists:
		return q.insert[kindExists], args
	}
	return q.insert[kindExact], append(args, int64(st.Expected))
}

func requestID(id string) string {
	if id == "" {
		return flux.DefaultRequestID
	}
	return id
}

// extraJSON encodes free-form metadata; nil (NULL) when there is none, so
// the common case stores nothing and reads skip JSON decoding.
func extraJSON(extra map[string]string) *string {
	if len(extra) == 0 {
		return nil
	}
	b, err := json.Marshal(extra)
	if err != nil { // map[string]string always marshals
		return nil
	}
	s := string(b)
	return &s
}

// channelName derives the LISTEN/NOTIFY channel of a schema. Channel names
// are identifiers (at most 63 bytes); a long schema name is hashed.
func channelName(schema string) string {
	const prefix = "flux_events:"
	if len(prefix)+len(schema) <= 63 {
		return prefix + schema
	}
	sum := sha256.Sum256([]byte(schema))
	return prefix + hex.EncodeToString(sum[:16])
}

// validateText returns an error when s cannot be stored in a PostgreSQL
// text column of a UTF-8 database: invalid UTF-8 or the NUL character.
func validateText(what, s string) error {
	switch {
	case !utf8.ValidString(s):
		return errorf(flux.ErrInvalidAppend, "%s %q is not valid UTF-8", what, s)
	case strings.IndexByte(s, 0) >= 0:
		return errorf(flux.ErrInvalidAppend, "%s %q contains a NUL character, which PostgreSQL cannot store", what, s)
	}
	return nil
}
