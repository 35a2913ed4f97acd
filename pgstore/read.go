package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/jackc/pgx/v5"
)

// readPageSize is how many rows one statement of ReadStream or ReadAll
// fetches. Reads run page after page (keyset pagination on version or
// position), so breaking out of a range loop early leaves at most one page
// for pgx to drain, however long the stream or log.
const readPageSize = 1000

// paramList builds a statement's $n placeholders and their arguments.
type paramList struct{ args []any }

func (p *paramList) add(v any) string {
	p.args = append(p.args, v)
	return "$" + strconv.Itoa(len(p.args))
}

// ReadStream implements flux.EventStore. Records come in version order,
// read in pages of readPageSize rows; each page is its own statement, so a
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
		b.WriteString(p.add(readPageSize))
		s.readPages(ctx, b.String(), p.args, afterArg, 0, func(r *flux.Record) int64 { return r.StreamVersion }, yield)
	}
}

// ReadAll implements flux.EventStore. Records come in position order, which
// is commit order (see Append), read in pages of readPageSize rows.
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
		b.WriteString(p.add(readPageSize))
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
	for {
		size := readPageSize
		if limit > 0 {
			size = min(size, remaining)
		}
		args[sizeArg] = size
		rows, err := s.pool.Query(ctx, query, args...)
		if err != nil {
			yield(flux.Record{}, s.fail(ctx, "read", err, ""))
			return
		}
		n := 0
		for rows.Next() {
			rec, err := scanRecord(rows)
			if err != nil {
				rows.Close()
				yield(flux.Record{}, err)
				return
			}
			n++
			args[after] = key(&rec)
			if !yield(rec, nil) {
				rows.Close()
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

// scanRecord reads one row of selectEvents.
func scanRecord(rows pgx.Rows) (flux.Record, error) {
	var r flux.Record
	var payload, exact, metadata []byte
	var occurred time.Time
	if err := rows.Scan(&r.Position, &r.StreamID, &r.StreamVersion, &r.AggregateType, &r.EventID,
		&r.EventName, &r.EventVersion, &payload, &exact, &metadata, &occurred,
		&r.Metadata.RequestID, &r.Metadata.CorrelationID, &r.Metadata.CausationID); err != nil {
		return r, fmt.Errorf("%w: pgstore: scan event at position %d: %v", flux.ErrCorruptEvent, r.Position, err)
	}
	r.Payload = payload
	if exact != nil {
		r.Payload = exact
	}
	r.OccurredAt = occurred.UTC()
	if metadata != nil {
		if err := decodeExtra(metadata, &r.Metadata.Extra); err != nil {
			return r, fmt.Errorf("%w: pgstore: stream %q version %d: %v", flux.ErrCorruptEvent, r.StreamID, r.StreamVersion, err)
		}
	}
	return r, nil
}

// decodeExtra decodes the metadata column: a JSON object of strings, or
// JSON null.
func decodeExtra(b []byte, extra *map[string]string) error {
	if err := json.Unmarshal(b, extra); err != nil {
		return fmt.Errorf("metadata is not a JSON object of strings: %v", err)
	}
	if len(*extra) == 0 {
		*extra = nil
	}
	return nil
}
