package fluxui

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

// Limits on what one request may ask for.
const (
	defaultPage = 50
	maxPage     = 500
	maxTrace    = 2000
)

type streamRow struct {
	StreamID      string `json:"stream_id"`
	AggregateType string `json:"aggregate_type"`
	Version       int64  `json:"version"`
	FirstEventAt  string `json:"first_event_at"`
	LastEventAt   string `json:"last_event_at"`
}

type streamsView struct {
	Prefix  string      `json:"prefix,omitempty"`
	Type    string      `json:"type,omitempty"`
	Types   []string    `json:"-"`
	Limit   int         `json:"limit"`
	Streams []streamRow `json:"streams"`
	// Next is the After value of the next page; empty on the last.
	Next string `json:"next,omitempty"`
	// Events is the number of events in the global log (its head).
	Events int64 `json:"events"`
	// Count is the number of matching streams, when asked (count=1).
	Count   int  `json:"count,omitempty"`
	Counted bool `json:"counted"`
}

func (c *Console) streams(r *http.Request) (any, error) {
	q := r.URL.Query()
	ctx := r.Context()
	v := streamsView{Prefix: q.Get("prefix"), Type: q.Get("type")}
	if c.cfg.Repository != nil {
		v.Types = c.cfg.Repository.Registry().AggregateTypes()
	}
	var err error
	if v.Limit, err = intParam(q.Get("limit"), defaultPage, 1, maxPage, "limit"); err != nil {
		return nil, err
	}
	after := q.Get("after")
	for _, s := range []string{v.Prefix, after} {
		if s != "" {
			if err := flux.ValidateStreamID(s); err != nil {
				return nil, badRequest("%v", err)
			}
		}
	}
	if len(v.Type) > flux.MaxNameLength {
		return nil, badRequest("aggregate type is longer than %d bytes", flux.MaxNameLength)
	}
	if v.Events, err = c.insp.Head(ctx); err != nil {
		return nil, err
	}
	// Keyset paging by stream ID. A prefix search starts just before the
	// prefix: an exact match is looked up directly (it sorts first), the
	// rest comes from ListStreams after it.
	if v.Prefix != "" && (after == "" || after < v.Prefix) {
		after = v.Prefix
		si, ok, err := c.streamInfo(ctx, v.Prefix)
		if err != nil {
			return nil, err
		}
		if ok && (v.Type == "" || si.AggregateType == v.Type) {
			v.Streams = append(v.Streams, rowOfStream(si))
		}
	}
	more := false
	if len(v.Streams) < v.Limit {
		for si, err := range c.insp.ListStreams(ctx, flux.ListStreamsOptions{AggregateType: v.Type, After: after, Limit: v.Limit - len(v.Streams) + 1}) {
			if err != nil {
				return nil, err
			}
			if !strings.HasPrefix(si.StreamID, v.Prefix) {
				break
			}
			if len(v.Streams) == v.Limit {
				more = true
				break
			}
			v.Streams = append(v.Streams, rowOfStream(si))
		}
	}
	if more {
		v.Next = v.Streams[len(v.Streams)-1].StreamID
	}
	if q.Get("count") == "1" {
		v.Counted = true
		if v.Prefix != "" {
			if ok, err := c.exists(ctx, v.Prefix); err != nil {
				return nil, err
			} else if ok {
				v.Count++
			}
		}
		for si, err := range c.insp.ListStreams(ctx, flux.ListStreamsOptions{AggregateType: v.Type, After: v.Prefix}) {
			if err != nil {
				return nil, err
			}
			if !strings.HasPrefix(si.StreamID, v.Prefix) {
				break
			}
			v.Count++
		}
	}
	return v, nil
}

func rowOfStream(si flux.StreamInfo) streamRow {
	return streamRow{si.StreamID, si.AggregateType, si.Version, fmtTime(si.FirstEventAt), fmtTime(si.LastEventAt)}
}

func (c *Console) exists(ctx context.Context, id string) (bool, error) {
	_, ok, err := c.record(ctx, id, 1)
	return ok, err
}

// record reads one event of a stream.
func (c *Console) record(ctx context.Context, id string, version int64) (flux.Record, bool, error) {
	for rec, err := range c.cfg.Store.ReadStream(ctx, id, flux.ReadStreamOptions{FromVersion: version, ToVersion: version}) {
		return rec, err == nil, err
	}
	return flux.Record{}, false, nil
}

// streamInfo summarises one stream with a few indexed reads: its version
// is found by doubling then bisecting, never by reading every event.
func (c *Console) streamInfo(ctx context.Context, id string) (flux.StreamInfo, bool, error) {
	first, ok, err := c.record(ctx, id, 1)
	if err != nil || !ok {
		return flux.StreamInfo{}, false, err
	}
	lo, hi := int64(1), int64(2) // lo exists; find hi that does not
	last := first
	for {
		rec, ok, err := c.record(ctx, id, hi)
		if err != nil {
			return flux.StreamInfo{}, false, err
		}
		if !ok {
			break
		}
		lo, last = hi, rec
		if hi > 1<<61 {
			break
		}
		hi *= 2
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		rec, ok, err := c.record(ctx, id, mid)
		if err != nil {
			return flux.StreamInfo{}, false, err
		}
		if ok {
			lo, last = mid, rec
		} else {
			hi = mid
		}
	}
	return flux.StreamInfo{StreamID: id, AggregateType: first.AggregateType, Version: lo, FirstEventAt: first.OccurredAt, LastEventAt: last.OccurredAt}, true, nil
}

// streamOf validates the id parameter and returns the stream's summary.
func (c *Console) streamOf(r *http.Request) (flux.StreamInfo, error) {
	id := r.URL.Query().Get("id")
	if id == "" {
		return flux.StreamInfo{}, badRequest("give the stream: ?id=STREAM-ID")
	}
	if err := flux.ValidateStreamID(id); err != nil {
		return flux.StreamInfo{}, badRequest("%v", err)
	}
	si, ok, err := c.streamInfo(r.Context(), id)
	if err != nil {
		return si, err
	}
	if !ok {
		return si, notFound("unknown stream %q: it has no events; search the stream list", id)
	}
	return si, nil
}

type eventRow struct {
	Position      int64             `json:"position"`
	Version       int64             `json:"version"`
	AggregateType string            `json:"aggregate_type"`
	StreamID      string            `json:"stream_id"`
	Event         string            `json:"event"`
	EventVersion  int               `json:"event_version"`
	EventID       string            `json:"event_id"`
	OccurredAt    string            `json:"occurred_at"`
	RequestID     string            `json:"request_id,omitempty"`
	CorrelationID string            `json:"correlation_id,omitempty"`
	CausationID   string            `json:"causation_id,omitempty"`
	Extra         map[string]string `json:"metadata,omitempty"`
	Payload       json.RawMessage   `json:"payload"`
	Note          string            `json:"note,omitempty"`
}

var envelopeRE = regexp.MustCompile(`"` + regexp.QuoteMeta(pii.EnvelopePrefix) + `[A-Za-z0-9_-]+"`)

// rowOf renders a record. Personal data reads "[encrypted]" unless the
// console shows it, decrypted by the repository's protector.
func (c *Console) rowOf(ctx context.Context, rec flux.Record) eventRow {
	r := eventRow{Position: rec.Position, Version: rec.StreamVersion, AggregateType: rec.AggregateType, StreamID: rec.StreamID,
		Event: rec.EventName, EventVersion: rec.EventVersion, EventID: rec.EventID, OccurredAt: fmtTime(rec.OccurredAt),
		RequestID: rec.Metadata.RequestID, CorrelationID: rec.Metadata.CorrelationID, CausationID: rec.Metadata.CausationID,
		Extra: rec.Metadata.Extra}
	stored := envelopeRE.ReplaceAll(rec.Payload, []byte(`"[encrypted]"`))
	if !json.Valid(stored) {
		b, _ := json.Marshal(string(rec.Payload))
		r.Payload, r.Note = b, "payload is not valid JSON; shown as a string"
		return r
	}
	r.Payload = stored
	if !c.cfg.ShowPersonalData || !envelopeRE.Match(rec.Payload) {
		return r
	}
	env, err := c.cfg.Repository.Decode(ctx, rec)
	if err != nil {
		r.Note = "does not decode: " + err.Error()
		return r
	}
	b, err := json.Marshal(env.Event)
	if err != nil {
		r.Note = "does not encode: " + err.Error()
		return r
	}
	r.Payload = b
	if len(env.Forgotten) > 0 {
		r.Note = "subject forgotten"
	}
	return r
}

type streamView struct {
	ID            string     `json:"stream_id"`
	AggregateType string     `json:"aggregate_type"`
	Version       int64      `json:"version"`
	FirstEventAt  string     `json:"first_event_at"`
	LastEventAt   string     `json:"last_event_at"`
	From          int64      `json:"from"`
	Events        []eventRow `json:"events"`
	Prev          int64      `json:"prev,omitempty"`
	Next          int64      `json:"next,omitempty"`
	HasState      bool       `json:"-"`
}

func (c *Console) stream(r *http.Request) (any, error) {
	si, err := c.streamOf(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	from, err := int64Param(q.Get("from"), 1, 1, si.Version, "from", si.StreamID)
	if err != nil {
		return nil, err
	}
	limit, err := intParam(q.Get("limit"), defaultPage, 1, maxPage, "limit")
	if err != nil {
		return nil, err
	}
	v := streamView{ID: si.StreamID, AggregateType: si.AggregateType, Version: si.Version, FirstEventAt: fmtTime(si.FirstEventAt),
		LastEventAt: fmtTime(si.LastEventAt), From: from, HasState: c.hidden != nil, Events: []eventRow{}}
	for rec, err := range c.cfg.Store.ReadStream(r.Context(), si.StreamID, flux.ReadStreamOptions{FromVersion: from, ToVersion: from + int64(limit) - 1}) {
		if err != nil {
			return nil, err
		}
		v.Events = append(v.Events, c.rowOf(r.Context(), rec))
	}
	if from > 1 {
		v.Prev = max(from-int64(limit), 1)
	}
	if n := from + int64(limit); n <= si.Version {
		v.Next = n
	}
	return v, nil
}

type field struct {
	Path   string `json:"path"`
	Value  string `json:"value"`
	Before string `json:"before,omitempty"`
	// Change is "", "changed", "added" or "removed" (diff only).
	Change string `json:"change,omitempty"`
}

type stateView struct {
	ID            string          `json:"stream_id"`
	AggregateType string          `json:"aggregate_type"`
	Version       int64           `json:"version"`
	MaxVersion    int64           `json:"max_version"`
	At            string          `json:"at,omitempty"`
	State         json.RawMessage `json:"state"`
	Fields        []field         `json:"fields"`
	// Event is the event that made this version.
	Event *eventRow `json:"event,omitempty"`
	// SnapshotVersion is the version of the snapshot the load started
	// from (0: none); EventsReplayed the events applied after it.
	SnapshotVersion  int64  `json:"snapshot_version"`
	EventsReplayed   int    `json:"events_replayed"`
	SnapshotRejected bool   `json:"snapshot_rejected,omitempty"`
	Forgotten        bool   `json:"forgotten,omitempty"`
	Hidden           bool   `json:"personal_data_hidden,omitempty"`
	Load             string `json:"load"`
}

// errNoRegistry answers state pages of a console without a repository.
var errNoRegistry = &httpError{http.StatusNotImplemented, "the aggregate's state needs the application's registry: this console was started without one (raw events are still shown); build your own console with fluxui.Config.Repository"}

func (c *Console) state(r *http.Request) (any, error) {
	if c.hidden == nil {
		return nil, errNoRegistry
	}
	si, err := c.streamOf(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	var opts flux.LoadOptions
	if s := q.Get("at"); s != "" {
		if q.Get("version") != "" {
			return nil, badRequest("give version or at, not both")
		}
		if opts.At, err = parseTime(s); err != nil {
			return nil, err
		}
	} else if opts.Version, err = int64Param(q.Get("version"), si.Version, 1, si.Version, "version", si.StreamID); err != nil {
		return nil, err
	}
	return c.stateAt(r.Context(), si, opts)
}

func (c *Console) stateAt(ctx context.Context, si flux.StreamInfo, opts flux.LoadOptions) (stateView, error) {
	agg, err := c.hidden.LoadAggregate(ctx, si.AggregateType, si.StreamID, opts)
	if errors.Is(err, flux.ErrUnknownAggregate) {
		return stateView{}, &httpError{http.StatusNotImplemented, fmt.Sprintf("stream %q holds aggregate type %s, which the registry does not know", si.StreamID, si.AggregateType)}
	}
	if err != nil {
		return stateView{}, err
	}
	v, err := c.viewOf(ctx, si, agg, agg.Version())
	if err != nil {
		return stateView{}, err
	}
	if !opts.At.IsZero() {
		v.At = fmtTime(opts.At)
	}
	if li, ok := agg.(interface{ LoadInfo() flux.LoadInfo }); ok {
		info := li.LoadInfo()
		v.SnapshotVersion, v.EventsReplayed, v.SnapshotRejected, v.Forgotten = info.SnapshotVersion, info.EventsReplayed, info.SnapshotRejected, info.Forgotten
	}
	switch {
	case v.SnapshotRejected:
		v.Load = fmt.Sprintf("a snapshot was found but could not be restored: replayed %d events", v.EventsReplayed)
	case v.SnapshotVersion > 0:
		v.Load = fmt.Sprintf("from the snapshot at version %d, then %d events replayed", v.SnapshotVersion, v.EventsReplayed)
	default:
		v.Load = fmt.Sprintf("no snapshot: %d events replayed", v.EventsReplayed)
	}
	return v, nil
}

// viewOf renders an aggregate's state at version, with the event that
// made that version.
func (c *Console) viewOf(ctx context.Context, si flux.StreamInfo, agg flux.Aggregate, version int64) (stateView, error) {
	b, err := json.Marshal(agg)
	if err != nil {
		return stateView{}, fmt.Errorf("%s %q: encode state: %w", si.AggregateType, si.StreamID, err)
	}
	v := stateView{ID: si.StreamID, AggregateType: si.AggregateType, Version: version, MaxVersion: si.Version,
		State: indent(b), Hidden: !c.cfg.ShowPersonalData && bytes.Contains(b, []byte(`"[encrypted]"`)), Fields: flatten(b)}
	rec, ok, err := c.record(ctx, si.StreamID, version)
	if err != nil {
		return stateView{}, err
	}
	if ok {
		row := c.rowOf(ctx, rec)
		v.Event = &row
	}
	return v, nil
}

// statesAt returns the states at two versions lo <= hi with one replay:
// the aggregate is loaded at lo, then the events up to hi are applied.
func (c *Console) statesAt(ctx context.Context, si flux.StreamInfo, lo, hi int64) (a, b stateView, err error) {
	agg, err := c.hidden.LoadAggregate(ctx, si.AggregateType, si.StreamID, flux.LoadOptions{Version: lo})
	if err != nil {
		return a, b, err
	}
	if a, err = c.viewOf(ctx, si, agg, lo); err != nil || lo == hi {
		return a, a, err
	}
	for rec, err := range c.cfg.Store.ReadStream(ctx, si.StreamID, flux.ReadStreamOptions{FromVersion: lo + 1, ToVersion: hi}) {
		if err != nil {
			return a, b, err
		}
		env, err := c.hidden.Decode(ctx, rec)
		if err != nil {
			return a, b, err
		}
		agg.Apply(env.Event)
	}
	b, err = c.viewOf(ctx, si, agg, hi)
	return a, b, err
}

type diffView struct {
	ID            string  `json:"stream_id"`
	AggregateType string  `json:"aggregate_type"`
	From          int64   `json:"from"`
	To            int64   `json:"to"`
	MaxVersion    int64   `json:"max_version"`
	Changed       int     `json:"changed"`
	Fields        []field `json:"fields"`
}

func (c *Console) diff(r *http.Request) (any, error) {
	if c.hidden == nil {
		return nil, errNoRegistry
	}
	si, err := c.streamOf(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	from, err := int64Param(q.Get("from"), max(si.Version-1, 1), 1, si.Version, "from", si.StreamID)
	if err != nil {
		return nil, err
	}
	to, err := int64Param(q.Get("to"), si.Version, 1, si.Version, "to", si.StreamID)
	if err != nil {
		return nil, err
	}
	a, b, err := c.statesAt(r.Context(), si, min(from, to), max(from, to))
	if err != nil {
		return nil, err
	}
	if from > to {
		a, b = b, a
	}
	v := diffView{ID: si.StreamID, AggregateType: si.AggregateType, From: from, To: to, MaxVersion: si.Version}
	before := map[string]string{}
	for _, f := range a.Fields {
		before[f.Path] = f.Value
	}
	seen := map[string]bool{}
	for _, f := range b.Fields {
		seen[f.Path] = true
		old, ok := before[f.Path]
		f.Before = old
		switch {
		case !ok:
			f.Change = "added"
		case old != f.Value:
			f.Change = "changed"
		}
		v.Fields = append(v.Fields, f)
	}
	for _, f := range a.Fields {
		if !seen[f.Path] {
			v.Fields = append(v.Fields, field{Path: f.Path, Before: f.Value, Change: "removed"})
		}
	}
	sort.SliceStable(v.Fields, func(i, j int) bool { return v.Fields[i].Path < v.Fields[j].Path })
	for _, f := range v.Fields {
		if f.Change != "" {
			v.Changed++
		}
	}
	return v, nil
}

// traceNode is an event of a trace, or a message that caused events but
// is not itself in the log (a command).
type traceNode struct {
	ID       string       `json:"id"`
	Event    *eventRow    `json:"event,omitempty"`
	Children []*traceNode `json:"children,omitempty"`
}

type traceView struct {
	Correlation string       `json:"correlation_id"`
	Events      int          `json:"events"`
	Streams     int          `json:"streams"`
	Truncated   bool         `json:"truncated,omitempty"`
	Roots       []*traceNode `json:"roots"`
}

func (c *Console) trace(r *http.Request) (any, error) {
	id := r.URL.Query().Get("correlation")
	v := traceView{Correlation: id, Roots: []*traceNode{}}
	if id == "" {
		return v, nil // the search form
	}
	if len(id) > flux.MaxStreamIDLength || strings.ContainsFunc(id, func(r rune) bool { return r < 0x20 }) {
		return nil, badRequest("correlation ID %.40q is not valid", id)
	}
	byID := map[string]*traceNode{}
	var order []*traceNode
	streams := map[string]bool{}
	for rec, err := range c.cfg.Store.ReadAll(r.Context(), flux.ReadAllOptions{CorrelationID: id, Limit: maxTrace + 1}) {
		if err != nil {
			return nil, err
		}
		if len(order) == maxTrace {
			v.Truncated = true
			break
		}
		row := c.rowOf(r.Context(), rec)
		n := &traceNode{ID: rec.EventID, Event: &row}
		byID[rec.EventID] = n
		order = append(order, n)
		streams[rec.StreamID] = true
	}
	if len(order) == 0 {
		return nil, notFound("no events with correlation ID %q", id)
	}
	v.Events, v.Streams = len(order), len(streams)
	causes := map[string]*traceNode{}
	for _, n := range order {
		cause := n.Event.CausationID
		if p, ok := byID[cause]; ok && p != n {
			p.Children = append(p.Children, n)
			continue
		}
		if cause == "" {
			v.Roots = append(v.Roots, n)
			continue
		}
		p, ok := causes[cause]
		if !ok {
			p = &traceNode{ID: cause}
			causes[cause] = p
			v.Roots = append(v.Roots, p)
		}
		p.Children = append(p.Children, n)
	}
	return v, nil
}

type projRow struct {
	Name       string `json:"name"`
	Position   int64  `json:"position"`
	Head       int64  `json:"head"`
	LagEvents  int64  `json:"lag_events"`
	Lag        string `json:"lag"`
	UpdatedAt  string `json:"updated_at,omitempty"`
	Running    bool   `json:"running"`
	LastError  string `json:"last_error,omitempty"`
	Registered bool   `json:"registered"`
}

type projView struct {
	Projections []projRow `json:"projections"`
	CanRebuild  bool      `json:"can_rebuild"`
	Message     string    `json:"message,omitempty"`
}

func (c *Console) projections(r *http.Request) (any, error) {
	ctx := r.Context()
	head, err := c.insp.Head(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]*projRow{}
	if cs, ok := c.cfg.Store.(projection.CheckpointStore); ok {
		cps, err := cs.ListCheckpoints(ctx)
		if err != nil {
			return nil, err
		}
		for _, cp := range cps {
			byName[cp.Name] = &projRow{Name: cp.Name, Position: cp.Position, UpdatedAt: fmtTime(cp.UpdatedAt)}
		}
	}
	if c.cfg.Runner != nil {
		sts, err := c.cfg.Runner.Status(ctx)
		if err != nil {
			return nil, err
		}
		for _, s := range sts {
			p := byName[s.Name]
			if p == nil {
				p = &projRow{Name: s.Name}
				byName[s.Name] = p
			}
			p.Registered, p.Running, p.LastError = true, s.Running, s.LastError
			p.Position = max(p.Position, s.Position)
		}
	}
	v := projView{CanRebuild: c.cfg.Runner != nil && c.cfg.AllowWrites, Projections: []projRow{}}
	now := c.cfg.Clock()
	for _, p := range byName {
		p.Head, p.LagEvents, p.Lag = head, max(head-p.Position, 0), "0s"
		if p.LagEvents > 0 {
			for rec, err := range c.cfg.Store.ReadAll(ctx, flux.ReadAllOptions{After: p.Position, Limit: 1}) {
				if err != nil {
					return nil, err
				}
				p.Lag = max(now.Sub(rec.OccurredAt), 0).Round(time.Second).String()
			}
		}
		v.Projections = append(v.Projections, *p)
	}
	sort.Slice(v.Projections, func(i, j int) bool { return v.Projections[i].Name < v.Projections[j].Name })
	return v, nil
}

func (c *Console) rebuild(w http.ResponseWriter, r *http.Request) error {
	name := r.PostForm.Get("name")
	if c.cfg.Runner == nil {
		return &httpError{http.StatusNotImplemented, "this console has no projection runner: rebuild with the application's own console or CLI"}
	}
	if name == "" {
		return badRequest("give the projection to rebuild")
	}
	if r.PostForm.Get("confirm") != name {
		return badRequest("not confirmed: type the projection's name %q to rebuild it; nothing changed", name)
	}
	known := false
	sts, err := c.cfg.Runner.Status(r.Context())
	if err != nil {
		return err
	}
	for _, s := range sts {
		if s.Name == name {
			known = true
			if s.Running {
				return &httpError{http.StatusConflict, fmt.Sprintf("projection %q is running in this process; stop it before rebuilding", name)}
			}
		}
	}
	if !known {
		return notFound("unknown projection %q", name)
	}
	var pos int64
	// A closed tab must not leave the read model half rebuilt: the
	// rebuild runs to its end (or the server's exit).
	err = c.cfg.Runner.Rebuild(context.WithoutCancel(r.Context()), name, projection.ReplayOptions{Progress: func(p projection.Progress) { pos = p.Position }})
	if err != nil {
		return &httpError{http.StatusInternalServerError, fmt.Sprintf("rebuild of %s failed; run it again to start over: %v", name, err)}
	}
	c.cfg.Logger.Info("fluxui: projection rebuilt", slog.String("projection", name), slog.Int64("position", pos))
	msg := fmt.Sprintf("rebuilt %s up to position %d", name, pos)
	v, err := c.projections(r)
	if err != nil {
		return err
	}
	pv := v.(projView)
	pv.Message = msg
	c.respond(w, r, "projections", pv)
	return nil
}

type forgetView struct {
	Subject   string `json:"subject,omitempty"`
	CanForget bool   `json:"can_forget"`
	Message   string `json:"message,omitempty"`
}

func (c *Console) forgetPage(r *http.Request) (any, error) {
	_, keys := c.cfg.Store.(pii.KeyStore)
	return forgetView{Subject: r.URL.Query().Get("subject"), CanForget: c.cfg.AllowWrites && (keys || c.cfg.Protector != nil)}, nil
}

func (c *Console) forget(w http.ResponseWriter, r *http.Request) error {
	subject := r.PostForm.Get("subject")
	if subject == "" {
		return badRequest("give the subject (the data subject's ID) to forget")
	}
	if len(subject) > flux.MaxStreamIDLength {
		return badRequest("subject is longer than %d bytes", flux.MaxStreamIDLength)
	}
	if r.PostForm.Get("confirm") != subject {
		return badRequest("not confirmed: type the subject ID %q to forget it; nothing was forgotten", subject)
	}
	opts := pii.ForgetOptions{By: r.PostForm.Get("by"), Reason: r.PostForm.Get("reason")}
	if opts.By == "" {
		opts.By = "flux console"
	}
	var rep pii.ForgetReport
	var err error
	switch keys, ok := c.cfg.Store.(pii.KeyStore); {
	case c.cfg.Protector != nil:
		rep, err = c.cfg.Protector.Forget(r.Context(), subject, opts)
	case ok:
		rep, err = pii.ForgetSubject(r.Context(), keys, subject, opts, c.cfg.Clock())
	default:
		return &httpError{http.StatusNotImplemented, "this store keeps no data keys: nothing to forget"}
	}
	if err != nil {
		return err
	}
	c.cfg.Logger.Info("fluxui: subject forgotten", slog.String("subject", subject), slog.String("by", opts.By))
	c.respond(w, r, "forget", forgetView{CanForget: true, Message: rep.String()})
	return nil
}

// tail streams the global log as Server-Sent Events: one "record" event
// per stored event, its id the global position (so a reconnecting browser
// resumes after the last one it saw, via Last-Event-ID).
func (c *Console) tail(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	after := r.Header.Get("Last-Event-ID")
	if after == "" {
		after = r.URL.Query().Get("after")
	}
	var pos int64
	if after != "" {
		p, err := strconv.ParseInt(after, 10, 64)
		if err != nil || p < 0 {
			c.fail(w, r, badRequest("after must be a global position (a number >= 0), not %.20q", after))
			return
		}
		pos = p
	} else {
		head, err := c.insp.Head(ctx)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		pos = max(head-20, 0) // start with the last few events
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		c.fail(w, r, errors.New("streaming is not supported by this server"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()
	t := time.NewTicker(c.cfg.PollInterval)
	defer t.Stop()
	idle := 0
	for {
		n := 0
		for rec, err := range c.cfg.Store.ReadAll(ctx, flux.ReadAllOptions{After: pos, Limit: 100}) {
			if err != nil {
				if ctx.Err() == nil {
					b, _ := json.Marshal(map[string]string{"error": err.Error()})
					fmt.Fprintf(w, "event: failure\ndata: %s\n\n", b)
					fl.Flush()
				}
				return
			}
			b, _ := json.Marshal(c.rowOf(ctx, rec))
			fmt.Fprintf(w, "id: %d\nevent: record\ndata: %s\n\n", rec.Position, b)
			pos, n = rec.Position, n+1
		}
		if n > 0 {
			fl.Flush()
			idle = 0
			continue
		}
		if idle++; idle%30 == 0 {
			fmt.Fprint(w, ": keep-alive\n\n")
			fl.Flush()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// flatten lists the leaves of a JSON document as dotted paths with their
// JSON values.
func flatten(doc []byte) []field {
	var v any
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return []field{{Path: "(state)", Value: string(doc)}}
	}
	var out []field
	var walk func(p string, v any)
	walk = func(p string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 && p != "" {
				out = append(out, field{Path: p, Value: "{}"})
			}
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				q := k
				if p != "" {
					q = p + "." + k
				}
				walk(q, x[k])
			}
		case []any:
			if len(x) == 0 {
				out = append(out, field{Path: p, Value: "[]"})
			}
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", p, i), e)
			}
		default:
			b, _ := json.Marshal(x)
			if p == "" {
				p = "(value)"
			}
			out = append(out, field{Path: p, Value: string(b)})
		}
	}
	walk("", v)
	return out
}

func indent(b []byte) json.RawMessage {
	var buf bytes.Buffer
	if json.Indent(&buf, b, "", "  ") != nil {
		return b
	}
	return buf.Bytes()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"}

// parseTime reads a time in RFC 3339, or a date and time without zone
// (UTC), as a datetime-local input sends it.
func parseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, badRequest("time %.40q not understood: give RFC 3339 (2026-01-02T10:00:00Z) or 2026-01-02 10:00 (UTC)", s)
}

func intParam(s string, def, lo, hi int, name string) (int, error) {
	v, err := int64Param(s, int64(def), int64(lo), int64(hi), name, "")
	return int(v), err
}

// int64Param parses a whole-number parameter within [lo, hi].
func int64Param(s string, def, lo, hi int64, name, stream string) (int64, error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, badRequest("%s must be a whole number, not %.20q", name, s)
	}
	if v < lo || v > hi {
		if stream != "" && v > hi {
			return 0, notFound("stream %q has %d events: no %s %d (give 1 to %d)", stream, hi, name, v, hi)
		}
		return 0, badRequest("%s must be between %d and %d, not %d", name, lo, hi, v)
	}
	return v, nil
}
