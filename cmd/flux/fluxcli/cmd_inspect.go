package fluxcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
)

func (m *Main) withBackend(ctx context.Context, dsn string, mode access, fn func(b *Backend) error) error {
	b, err := openBackend(ctx, m.dsnOf(dsn), mode)
	if err == nil {
		b.clock = m.Clock
	}
	if err != nil {
		return err
	}
	defer b.Close()
	return fn(b)
}

type streamRow struct {
	AggregateType string `json:"aggregate_type"`
	StreamID      string `json:"stream_id"`
	Version       int64  `json:"version"`
	FirstEventAt  stamp  `json:"first_event_at"`
	LastEventAt   stamp  `json:"last_event_at"`
}

func runStreams(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("streams [--type TYPE] [--limit N]", "Lists streams (one per aggregate) with their type, version and the times of\ntheir first and last events, ordered by stream ID.", "  flux streams\n  flux streams --type BudgetEnvelope --json")
	c := addCommon(fs)
	typ := fs.String("type", "", "only streams of this aggregate `type`")
	limit := countFlag(fs, "limit", "show at most `n` streams (0: all)")
	if err := parse(fs, args); err != nil {
		return err
	}
	return m.withBackend(ctx, *c.dsn, readOnly, func(b *Backend) error {
		var rows []streamRow
		for si, err := range b.store.ListStreams(ctx, flux.ListStreamsOptions{AggregateType: *typ, Limit: int(*limit)}) {
			if err != nil {
				return err
			}
			rows = append(rows, streamRow{si.AggregateType, si.StreamID, si.Version, stamp(si.FirstEventAt), stamp(si.LastEventAt)})
		}
		if *c.json {
			return jsonLines(m.Stdout, rows)
		}
		if len(rows) == 0 {
			fmt.Fprintln(m.Stdout, "no streams")
			return nil
		}
		t := make([][]string, len(rows))
		for i, r := range rows {
			t[i] = []string{r.AggregateType, r.StreamID, strconv.FormatInt(r.Version, 10), r.FirstEventAt.String(), r.LastEventAt.String()}
		}
		return table(m.Stdout, []string{"AGGREGATE TYPE", "STREAM", "VERSION", "FIRST EVENT", "LAST EVENT"}, t)
	})
}

type eventRow struct {
	Position      int64           `json:"position"`
	OccurredAt    stamp           `json:"occurred_at"`
	AggregateType string          `json:"aggregate_type"`
	StreamID      string          `json:"stream_id"`
	Version       int64           `json:"version"`
	Event         string          `json:"event"`
	EventVersion  int             `json:"event_version"`
	EventID       string          `json:"event_id"`
	RequestID     string          `json:"request_id"`
	CorrelationID string          `json:"correlation_id"`
	CausationID   string          `json:"causation_id,omitempty"`
	Payload       json.RawMessage `json:"payload"`
	Note          string          `json:"note,omitempty"`
	// Error says why the stored event could not be read; Payload then
	// holds the stored text (as a JSON string when it is not JSON).
	Error string `json:"error,omitempty"`
}

var envelopeRE = regexp.MustCompile(`"fluxpii:v1:[A-Za-z0-9_-]+"`)

// rowOf renders a stored record: decoded (personal data decrypted, or
// "[forgotten]") with the secret; as stored, personal data "[encrypted]",
// without it.
//
// A wrong secret is an error (every row would fail alike); an event that
// does not decode otherwise is shown as stored, with a note.
func (a *application) rowOf(ctx context.Context, rec flux.Record) (eventRow, error) {
	r := eventRow{Position: rec.Position, OccurredAt: stamp(rec.OccurredAt), AggregateType: rec.AggregateType,
		StreamID: rec.StreamID, Version: rec.StreamVersion, Event: rec.EventName, EventVersion: rec.EventVersion,
		EventID: rec.EventID, RequestID: rec.Metadata.RequestID, CorrelationID: rec.Metadata.CorrelationID,
		CausationID: rec.Metadata.CausationID}
	stored := json.RawMessage(canonicalJSON(envelopeRE.ReplaceAll(rec.Payload, []byte(`"[encrypted]"`))))
	if !json.Valid(stored) {
		// Corrupt in the database: show the text, say where and why.
		var syntax error
		var v any
		if err := json.Unmarshal(rec.Payload, &v); err != nil {
			syntax = err
		}
		quoted, _ := json.Marshal(strings.ToValidUTF8(string(rec.Payload), "\ufffd"))
		r.Payload = quoted
		r.Error = fmt.Sprintf("event at position %d (stream %q version %d): the stored payload is not JSON: %v", rec.Position, rec.StreamID, rec.StreamVersion, syntax)
		return r, nil
	}
	if a.protector == nil || !a.registered {
		r.Payload = stored
		if envelopeRE.Match(rec.Payload) {
			r.Note = "personal data encrypted; set KEY_MANAGEMENT_SECRET to read it"
			if !a.registered {
				r.Note = "personal data encrypted; the application's own flux decrypts it"
			}
		}
		return r, nil
	}
	env, err := a.repo.Decode(ctx, rec)
	if errors.Is(err, pii.ErrWrongSecret) {
		return r, err
	}
	if err != nil {
		r.Payload = stored
		r.Error = fmt.Sprintf("event at position %d (stream %q version %d) does not decode: %v", rec.Position, rec.StreamID, rec.StreamVersion, err)
		return r, nil
	}
	b, err := json.Marshal(env.Event)
	if err != nil {
		r.Payload, r.Note = stored, "does not encode: "+err.Error()
		return r, nil
	}
	r.Payload = b
	if env.Name != rec.EventName || env.Version != rec.EventVersion {
		r.Note = fmt.Sprintf("upcast to %s v%d", env.Name, env.Version)
	}
	if len(env.Forgotten) > 0 {
		r.Note = "subject forgotten"
	}
	return r, nil
}

// printEvents prints every row, then fails if some could not be read, so
// a script sees every event and a non-zero exit.
func (m *Main) printEvents(rows []eventRow, asJSON bool, full bool) error {
	if err := m.printEventRows(rows, asJSON, full); err != nil {
		return err
	}
	var bad []string
	for _, r := range rows {
		if r.Error != "" {
			bad = append(bad, strconv.FormatInt(r.Position, 10))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d of %d events could not be read (positions %s); their rows say why", len(bad), len(rows), strings.Join(bad, ", "))
	}
	return nil
}

func (m *Main) printEventRows(rows []eventRow, asJSON bool, full bool) error {
	if asJSON {
		return jsonLines(m.Stdout, rows)
	}
	if len(rows) == 0 {
		fmt.Fprintln(m.Stdout, "no events")
		return nil
	}
	t := make([][]string, len(rows))
	for i, r := range rows {
		payload := string(r.Payload)
		if !full {
			payload = shorten(payload, 100)
		}
		if r.Note != "" {
			payload += "  (" + r.Note + ")"
		}
		if r.Error != "" {
			payload += "  (ERROR: " + r.Error + ")"
		}
		t[i] = []string{strconv.FormatInt(r.Position, 10), r.OccurredAt.String(), r.AggregateType, short(r.StreamID),
			strconv.FormatInt(r.Version, 10), r.Event + " v" + strconv.Itoa(r.EventVersion), short(r.CorrelationID), payload}
	}
	return table(m.Stdout, []string{"POS", "OCCURRED (UTC)", "AGGREGATE", "STREAM", "VER", "EVENT", "CORRELATION", "PAYLOAD"}, t)
}

func runEvents(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("events [--stream ID] [--type EVENT]... [--since T] [--until T] [--correlation ID] [--request ID]",
		"Lists events in global order: one stream's, or the whole log's, filtered by\nevent type, time range, correlation or request ID. Personal data is shown\ndecrypted only when KEY_MANAGEMENT_SECRET is set (forgotten subjects read\n\"[forgotten]\"); otherwise it shows as \"[encrypted]\".",
		"  flux events --stream 0190f6a0-3c1e-7b8e-9d2f-0123456789ab\n  flux events --type BudgetEnvelopeCredited --since \"2026-01-01\" --until \"-1h\"\n  flux events --correlation req-42 --json")
	c := addCommon(fs)
	streamID := fs.String("stream", "", "only this stream (aggregate `ID`)")
	var types stringList
	fs.Var(&types, "type", "only events of this registered `name` (repeatable)")
	since := fs.String("since", "", "only events at or after `time`")
	until := fs.String("until", "", "only events at or before `time`")
	corr := fs.String("correlation", "", "only events with this correlation `ID`")
	req := fs.String("request", "", "only events with this request `ID`")
	limit := countFlag(fs, "limit", "show at most `n` events (0: all)")
	full := fs.Bool("full", false, "do not shorten payloads in the table")
	if err := parse(fs, args); err != nil {
		return err
	}
	now := m.Clock()
	var from, to time.Time
	var err error
	if *since != "" {
		if from, err = parseTime(*since, now); err != nil {
			return err
		}
	}
	if *until != "" {
		if to, err = parseTime(*until, now); err != nil {
			return err
		}
	}
	return m.withBackend(ctx, *c.dsn, readOnly, func(b *Backend) error {
		a, err := m.openApp(b)
		if err != nil {
			return err
		}
		var names []string
		for _, t := range types {
			if !a.registered {
				names = append(names, t) // as stored
				continue
			}
			if a.reg.AggregateTypeOf(t) == "" {
				return &usageError{fmt.Sprintf("unknown event type %q; known: %v", t, a.reg.EventNames())}
			}
			names = append(names, a.reg.StoredNames(t)...)
		}
		var rows []eventRow
		var rowErr error
		add := func(rec flux.Record) bool {
			r, err := a.rowOf(ctx, rec)
			if err != nil {
				rowErr = err
				return false
			}
			rows = append(rows, r)
			return *limit == 0 || int64(len(rows)) < *limit
		}
		if *streamID != "" {
			if err := flux.ValidateStreamID(*streamID); err != nil {
				return err
			}
			for rec, err := range b.store.ReadStream(ctx, *streamID, flux.ReadStreamOptions{Since: from, Until: to, EventNames: names}) {
				if err != nil {
					return m.eventsFailed(rows, *c.json, *full, err)
				}
				if (*corr != "" && rec.Metadata.CorrelationID != *corr) || (*req != "" && rec.Metadata.RequestID != *req) {
					continue
				}
				if !add(rec) {
					break
				}
			}
			if len(rows) == 0 {
				if err := exists(ctx, b, *streamID); err != nil {
					return err
				}
			}
		} else {
			for rec, err := range b.store.ReadAll(ctx, flux.ReadAllOptions{Since: from, Until: to, EventNames: names, CorrelationID: *corr, RequestID: *req, Limit: int(*limit)}) {
				if err != nil {
					return m.eventsFailed(rows, *c.json, *full, err)
				}
				if !add(rec) {
					break
				}
			}
		}
		if rowErr != nil {
			return rowErr
		}
		return m.printEvents(rows, *c.json, *full)
	})
}

// eventsFailed prints the rows read before the store failed, then
// returns the store's error (which names the event it could not read).
func (m *Main) eventsFailed(rows []eventRow, asJSON, full bool, err error) error {
	if len(rows) > 0 {
		if perr := m.printEventRows(rows, asJSON, full); perr != nil {
			return perr
		}
	}
	pos := int64(0)
	if len(rows) > 0 {
		pos = rows[len(rows)-1].Position
	}
	return fmt.Errorf("reading stopped after position %d: %w", pos, err)
}

// exists fails with a clear error for a stream without events.
func exists(ctx context.Context, b *Backend, id string) error {
	for _, err := range b.store.ReadStream(ctx, id, flux.ReadStreamOptions{ToVersion: 1}) {
		return err
	}
	return fmt.Errorf("unknown stream %q: no events; list streams with 'flux streams'", id)
}

func runTrace(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("trace CORRELATION-ID", "Shows every event of one correlation ID, across all streams, in global\norder: the story of one request, through the commands its event handlers\ndispatched.", "  flux trace req-42\n  flux trace 0190f6a0-3c1e-7b8e-9d2f-0123456789ab --json")
	c := addCommon(fs)
	full := fs.Bool("full", false, "do not shorten payloads in the table")
	id, rest := firstArg(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	if id == "" {
		return &usageError{"give the correlation ID to trace"}
	}
	return m.withBackend(ctx, *c.dsn, readOnly, func(b *Backend) error {
		a, err := m.openApp(b)
		if err != nil {
			return err
		}
		var rows []eventRow
		streams := map[string]bool{}
		for rec, err := range b.store.ReadAll(ctx, flux.ReadAllOptions{CorrelationID: id}) {
			if err != nil {
				return err
			}
			r, err := a.rowOf(ctx, rec)
			if err != nil {
				return err
			}
			rows = append(rows, r)
			streams[rec.StreamID] = true
		}
		if len(rows) == 0 {
			return fmt.Errorf("no events with correlation ID %q", id)
		}
		if *c.json {
			return jsonLines(m.Stdout, rows)
		}
		fmt.Fprintf(m.Stdout, "correlation %s: %d events in %d streams, %s to %s\n\n", id, len(rows), len(streams), rows[0].OccurredAt, rows[len(rows)-1].OccurredAt)
		return m.printEvents(rows, false, *full)
	})
}

// firstArg splits a leading positional argument from the flags.
func firstArg(args []string) (string, []string) {
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		return args[0], args[1:]
	}
	return "", args
}

func runState(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("state TYPE ID [--at TIME | --version N] [--diff TIME]",
		"Shows an aggregate's state, rebuilt from its events: now, as it was at a\nmoment (--at) or at a version (--version). With --diff, shows the fields\nthat changed between that state and another moment. Types are those of the\nregistered application (User, BudgetEnvelope, ...).",
		"  flux state User 0190f6a0-3c1e-7b8e-9d2f-0123456789ab\n  flux state BudgetEnvelope env-1 --at \"2026-01-02 10:00\"\n  flux state BudgetEnvelope env-1 --version 3 --diff now")
	c := addCommon(fs)
	at := fs.String("at", "", "the state at this `time`")
	version := countFlag(fs, "version", "the state at this `version`")
	diff := fs.String("diff", "", "compare with the state at this `time`")
	typ, rest := firstArg(args)
	id, rest := firstArg(rest)
	if err := parse(fs, rest); err != nil {
		return err
	}
	if typ == "" || id == "" {
		return &usageError{"give the aggregate type and ID: flux state TYPE ID"}
	}
	if *at != "" && *version != 0 {
		return &usageError{"give --at or --version, not both"}
	}
	now := m.Clock()
	var opts flux.LoadOptions
	if *at != "" {
		t, err := parseTime(*at, now)
		if err != nil {
			return err
		}
		opts.At = t
	}
	opts.Version = *version
	if opts.Version < 0 {
		return &usageError{"--version must be positive"}
	}
	return m.withBackend(ctx, *c.dsn, readOnly, func(b *Backend) error {
		a, err := m.openApp(b)
		if err != nil {
			return err
		}
		if !a.registered {
			return errNoRegistry("aggregate states and diffs")
		}
		if !contains(a.reg.AggregateTypes(), typ) {
			return &usageError{fmt.Sprintf("unknown aggregate type %q; known: %v", typ, a.reg.AggregateTypes())}
		}
		left, err := stateOf(ctx, a, typ, id, opts)
		if err != nil {
			return err
		}
		if *diff == "" {
			if *c.json {
				return jsonLines(m.Stdout, []stateView{left})
			}
			fmt.Fprintf(m.Stdout, "%s %s at version %d%s\n", typ, id, left.Version, asOf(opts))
			if left.Hidden {
				fmt.Fprintln(m.Stdout, "(personal data hidden: set KEY_MANAGEMENT_SECRET to read it)")
			}
			if left.Forgotten {
				fmt.Fprintln(m.Stdout, "(the subject of some personal data was forgotten)")
			}
			keys := sortedKeys(left.State)
			rows := make([][]string, len(keys))
			for i, k := range keys {
				rows[i] = []string{k, string(left.State[k])}
			}
			return table(m.Stdout, []string{"FIELD", "VALUE"}, rows)
		}
		t2, err := parseTime(*diff, now)
		if err != nil {
			return err
		}
		right, err := stateOf(ctx, a, typ, id, flux.LoadOptions{At: t2})
		if err != nil {
			return err
		}
		var changed [][]string
		var out []map[string]any
		for _, k := range sortedKeys(left.State, right.State) {
			l, r := string(left.State[k]), string(right.State[k])
			if l != r {
				changed = append(changed, []string{k, orDash(l), orDash(r)})
				out = append(out, map[string]any{"field": k, "before": json.RawMessage(orNull(l)), "after": json.RawMessage(orNull(r))})
			}
		}
		if *c.json {
			return jsonLines(m.Stdout, out)
		}
		fmt.Fprintf(m.Stdout, "%s %s: version %d%s -> version %d as of %s\n", typ, id, left.Version, asOf(opts), right.Version, fmtTime(t2))
		if len(changed) == 0 {
			fmt.Fprintln(m.Stdout, "no field changed")
			return nil
		}
		return table(m.Stdout, []string{"FIELD", "BEFORE", "AFTER"}, changed)
	})
}

type stateView struct {
	Type      string                     `json:"type"`
	ID        string                     `json:"id"`
	Version   int64                      `json:"version"`
	State     map[string]json.RawMessage `json:"state"`
	Hidden    bool                       `json:"personal_data_hidden,omitempty"`
	Forgotten bool                       `json:"forgotten,omitempty"`
}

func stateOf(ctx context.Context, a *application, typ, id string, opts flux.LoadOptions) (stateView, error) {
	agg, err := a.repo.LoadAggregate(ctx, typ, id, opts)
	if errors.Is(err, flux.ErrAggregateNotFound) {
		return stateView{}, fmt.Errorf("%s %q has no events%s; list streams with 'flux streams --type %s'", typ, id, asOf(opts), typ)
	}
	if err != nil {
		return stateView{}, err
	}
	b, err := json.Marshal(agg)
	if err != nil {
		return stateView{}, err
	}
	v := stateView{Type: typ, ID: id, Version: agg.Version(), Hidden: a.protector == nil}
	if err := json.Unmarshal(b, &v.State); err != nil {
		return stateView{}, err
	}
	if li, ok := agg.(interface{ LoadInfo() flux.LoadInfo }); ok {
		v.Forgotten = li.LoadInfo().Forgotten && a.protector != nil
	}
	return v, nil
}

func asOf(opts flux.LoadOptions) string {
	switch {
	case !opts.At.IsZero():
		return " as of " + fmtTime(opts.At)
	case opts.Version > 0:
		return fmt.Sprintf(" (asked for version %d)", opts.Version)
	}
	return ""
}

func sortedKeys(maps ...map[string]json.RawMessage) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range maps {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNull(s string) string {
	if s == "" {
		return "null"
	}
	return s
}
