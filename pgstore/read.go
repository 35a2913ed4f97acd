package pgstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"iter"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Reads run page after page (keyset pagination on version or position),
// so breaking out of a range loop early leaves at most one page for pgx to
// drain, however long the stream or log. Pages start small and grow, so a
// long read costs few round trips and an early break costs at most about
// what was read already.
const (
	firstPageSize = 1000
	maxPageSize   = 16000
)

// paramList builds a statement's $n placeholders and their arguments.
type paramList struct{ args []any }

func (p *paramList) add(v any) string {
	p.args = append(p.args, v)
	return "$" + strconv.Itoa(len(p.args))
}

// ReadStream implements flux.EventStore. Records come in version order,
// read in pages (see firstPageSize); each page is its own statement, so a
// long read also sees events appended after it began.
func (s *Store) ReadStream(ctx context.Context, streamID string, opts flux.ReadStreamOptions) iter.Seq2[flux.Record, error] {
	return func(yield func(flux.Record, error) bool) {
		if s.closed.Load() {
			yield(flux.Record{}, flux.ErrStoreClosed)
			return
		}
		var b strings.Builder
		var p paramList
		b.WriteString(s.q.selectEvents)
		b.WriteString(" WHERE aggregate_id = " + p.add(streamID))
		afterArg := len(p.args)
		b.WriteString(" AND version > " + p.add(max(opts.FromVersion-1, 0)))
		if opts.ToVersion > 0 {
			b.WriteString(" AND version <= " + p.add(opts.ToVersion))
		}
		timeAndNames(&b, &p, opts.Since, opts.Until, opts.EventNames)
		b.WriteString(" ORDER BY version LIMIT ")
		b.WriteString(p.add(firstPageSize))
		s.readPages(ctx, b.String(), p.args, afterArg, 0, func(r *flux.Record) int64 { return r.StreamVersion }, yield)
	}
}

// ReadAll implements flux.EventStore. Records come in position order, which
// is commit order (see Append), read in pages (see firstPageSize).
func (s *Store) ReadAll(ctx context.Context, opts flux.ReadAllOptions) iter.Seq2[flux.Record, error] {
	return func(yield func(flux.Record, error) bool) {
		if s.closed.Load() {
			yield(flux.Record{}, flux.ErrStoreClosed)
			return
		}
		var b strings.Builder
		var p paramList
		b.WriteString(s.q.selectEvents)
		b.WriteString(" WHERE id > " + p.add(max(opts.After, 0)))
		timeAndNames(&b, &p, opts.Since, opts.Until, opts.EventNames)
		if len(opts.AggregateTypes) > 0 {
			b.WriteString(" AND aggregate_type = ANY(" + p.add(opts.AggregateTypes) + ")")
		}
		if opts.CorrelationID != "" {
			b.WriteString(" AND correlation_id = " + p.add(opts.CorrelationID))
		}
		if opts.RequestID != "" {
			b.WriteString(" AND request_id = " + p.add(opts.RequestID))
		}
		b.WriteString(" ORDER BY id LIMIT ")
		b.WriteString(p.add(firstPageSize))
		s.readPages(ctx, b.String(), p.args, 0, max(opts.Limit, 0), func(r *flux.Record) int64 { return r.Position }, yield)
	}
}

func timeAndNames(b *strings.Builder, p *paramList, since, until time.Time, names []string) {
	if !since.IsZero() {
		b.WriteString(" AND occurred_on >= " + p.add(flux.NormalizeTime(since)))
	}
	if !until.IsZero() {
		b.WriteString(" AND occurred_on <= " + p.add(flux.NormalizeTime(until)))
	}
	if len(names) > 0 {
		b.WriteString(" AND event_name = ANY(" + p.add(names) + ")")
	}
}

// readPages runs query page after page and yields its records. args[after]
// is the keyset bound (version or position) the next page starts after, the
// last argument the page size; limit caps the total (0: none); key gives a
// record's keyset value.
func (s *Store) readPages(ctx context.Context, query string, args []any, after, limit int, key func(*flux.Record) int64, yield func(flux.Record, error) bool) {
	sizeArg := len(args) - 1
	remaining := limit
	var dec decoder
	for size := firstPageSize; ; size = min(4*size, maxPageSize) {
		if limit > 0 {
			size = min(size, remaining)
		}
		args[sizeArg] = size
		// Each page is one statement: one that meets a dead connection
		// before its first row runs again (see query).
		rows, err := s.query(ctx, query, args...)
		if err != nil {
			yield(flux.Record{}, s.fail(ctx, "read", err, ""))
			return
		}
		n := 0
		for rows.Next() {
			if n == 0 {
				dec.reset(rows.FieldDescriptions())
			}
			rec, err := dec.decode(rows)
			if err != nil {
				rows.Close()
				yield(flux.Record{}, err)
				return
			}
			n++
			args[after] = key(&rec)
			if !yield(rec, nil) {
				rows.Close() // reads and discards the rest of this page
				return
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			yield(flux.Record{}, s.fail(ctx, "read", err, ""))
			return
		}
		if limit > 0 {
			remaining -= n
			if remaining <= 0 {
				return
			}
		}
		if n < size {
			return
		}
	}
}

// OIDs of the column types of selectEvents, in order, and whether the fast
// path needs them in binary format.
var eventColumns = [...]struct {
	oid    uint32
	binary bool
}{
	{pgtype.Int8OID, true},        // id
	{pgtype.VarcharOID, false},    // aggregate_id
	{pgtype.Int8OID, true},        // version
	{pgtype.VarcharOID, false},    // aggregate_type
	{pgtype.UUIDOID, true},        // event_id
	{pgtype.VarcharOID, false},    // event_name
	{pgtype.Int4OID, true},        // event_version
	{pgtype.JSONBOID, false},      // payload (text, or binary: version 1 and text)
	{pgtype.JSONOID, false},       // payload_json
	{pgtype.JSONBOID, false},      // metadata
	{pgtype.TimestamptzOID, true}, // occurred_on
	{pgtype.TextOID, false},       // request_id
	{pgtype.TextOID, false},       // correlation_id
	{pgtype.TextOID, false},       // causation_id
}

// decoder turns rows of selectEvents into records. When the columns arrive
// in the binary formats pgx normally asks for, it decodes the raw values
// itself (several times cheaper than pgx's reflective Scan) and reuses the
// strings that repeat from row to row (stream, type, event name, request
// IDs) instead of allocating them again; otherwise it falls back to Scan.
type decoder struct {
	fast                                    bool
	jsonbBinary                             bool // jsonb columns carry a version byte
	stream, aggType, name, req, corr, cause string
}

func (d *decoder) reset(fds []pgconn.FieldDescription) {
	d.fast = len(fds) == len(eventColumns)
	d.jsonbBinary = d.fast && fds[7].Format == pgtype.BinaryFormatCode
	for i := 0; d.fast && i < len(fds); i++ {
		c := eventColumns[i]
		switch {
		case fds[i].DataTypeOID != c.oid && !(c.oid == pgtype.VarcharOID && fds[i].DataTypeOID == pgtype.TextOID):
			d.fast = false
		case c.binary && fds[i].Format != pgtype.BinaryFormatCode:
			d.fast = false
		case c.oid == pgtype.JSONBOID && (fds[i].Format == pgtype.BinaryFormatCode) != d.jsonbBinary:
			d.fast = false
		}
	}
}

func (d *decoder) decode(rows pgx.Rows) (flux.Record, error) {
	if !d.fast {
		return scanRecord(rows)
	}
	return d.decodeValues(rows.RawValues())
}

// decodeValues decodes the raw column values of one row in the formats
// reset accepted. Damaged values give an error matching
// flux.ErrCorruptEvent naming the position, stream and version.
func (d *decoder) decodeValues(v [][]byte) (flux.Record, error) {
	var r flux.Record
	if len(v) != len(eventColumns) || len(v[0]) != 8 || len(v[2]) != 8 || len(v[6]) != 4 || len(v[4]) != 16 || len(v[10]) != 8 {
		return r, corrupt(&r, "a column is missing or has an unexpected size")
	}
	r.Position = int64(binary.BigEndian.Uint64(v[0]))
	r.StreamID = reuse(&d.stream, v[1])
	r.StreamVersion = int64(binary.BigEndian.Uint64(v[2]))
	r.AggregateType = reuse(&d.aggType, v[3])
	r.EventID = uuid.Format([16]byte(v[4]))
	r.EventName = reuse(&d.name, v[5])
	r.EventVersion = int(int32(binary.BigEndian.Uint32(v[6])))
	if v[8] != nil { // the exact copy of a payload jsonb could not hold
		r.Payload = bytes.Clone(v[8])
	} else {
		p, ok := d.jsonb(v[7])
		if !ok {
			return r, corrupt(&r, "payload is not jsonb version 1")
		}
		r.Payload = bytes.Clone(p)
	}
	if v[9] != nil {
		m, ok := d.jsonb(v[9])
		if !ok {
			return r, corrupt(&r, "metadata is not jsonb version 1")
		}
		extra, err := decodeExtra(m)
		if err != nil {
			return r, corrupt(&r, err.Error())
		}
		r.Metadata.Extra = extra
	}
	us := int64(binary.BigEndian.Uint64(v[10]))
	if us == math.MaxInt64 || us == math.MinInt64 {
		return r, corrupt(&r, "occurred_on is infinite")
	}
	r.OccurredAt = time.UnixMicro(pgEpochMicros + us).UTC()
	r.Metadata.RequestID = reuse(&d.req, v[11])
	r.Metadata.CorrelationID = reuse(&d.corr, v[12])
	r.Metadata.CausationID = reuse(&d.cause, v[13])
	return r, nil
}

// corrupt describes damage to the stored event r (as far as it was read).
func corrupt(r *flux.Record, what string) error {
	return fmt.Errorf("%w: pgstore: event at position %d (stream %q version %d): %s", flux.ErrCorruptEvent, r.Position, r.StreamID, r.StreamVersion, what)
}

// jsonb returns the JSON text of a jsonb value in the column's format.
func (d *decoder) jsonb(b []byte) ([]byte, bool) {
	if !d.jsonbBinary {
		return b, b != nil
	}
	if len(b) == 0 || b[0] != 1 {
		return nil, false
	}
	return b[1:], true
}

// pgEpochMicros is 2000-01-01T00:00:00Z, PostgreSQL's epoch, in Unix
// microseconds.
const pgEpochMicros = 946684800 * 1000000

// reuse returns *prev if it spells b, and otherwise a new string that it
// remembers in *prev: consecutive rows of one stream or one save repeat
// most of their text columns.
func reuse(prev *string, b []byte) string {
	if string(b) != *prev { // compiled without allocating
		*prev = string(b)
	}
	return *prev
}

// scanRecord reads one row of selectEvents through pgx's Scan: the fallback
// for result formats the decoder does not know.
func scanRecord(rows pgx.Rows) (flux.Record, error) {
	var r flux.Record
	var payload, exact, metadata []byte
	var occurred time.Time
	var eventID pgtype.UUID
	if err := rows.Scan(&r.Position, &r.StreamID, &r.StreamVersion, &r.AggregateType, &eventID,
		&r.EventName, &r.EventVersion, &payload, &exact, &metadata, &occurred,
		&r.Metadata.RequestID, &r.Metadata.CorrelationID, &r.Metadata.CausationID); err != nil {
		return r, fmt.Errorf("%w: pgstore: scan event at position %d: %v", flux.ErrCorruptEvent, r.Position, err)
	}
	r.EventID = uuid.Format(eventID.Bytes)
	r.Payload = payload
	if exact != nil {
		r.Payload = exact
	}
	r.OccurredAt = occurred.UTC()
	if metadata != nil {
		extra, err := decodeExtra(metadata)
		if err != nil {
			return r, fmt.Errorf("%w: pgstore: stream %q version %d: %v", flux.ErrCorruptEvent, r.StreamID, r.StreamVersion, err)
		}
		r.Metadata.Extra = extra
	}
	return r, nil
}

// decodeExtra decodes the metadata column: a JSON object of strings, or
// JSON null (nil).
func decodeExtra(b []byte) (map[string]string, error) {
	var extra map[string]string
	if err := json.Unmarshal(b, &extra); err != nil {
		return nil, fmt.Errorf("metadata is not a JSON object of strings: %v", err)
	}
	if len(extra) == 0 {
		return nil, nil
	}
	return extra, nil
}
