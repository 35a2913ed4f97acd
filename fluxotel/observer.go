package fluxotel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

// Attribute keys of spans, span events and measurements. Values are IDs,
// registered names, counts and outcomes: never personal data.
const (
	CommandKey          = attribute.Key("flux.command")           // command Go type, e.g. "app.RenameUser"
	QueryKey            = attribute.Key("flux.query")             // query Go type
	AggregateTypeKey    = attribute.Key("flux.aggregate_type")    // registered aggregate type name
	StreamIDKey         = attribute.Key("flux.stream_id")         // aggregate (stream) ID
	EventCountKey       = attribute.Key("flux.event_count")       // events to append, or in a batch
	CorrelationIDKey    = attribute.Key("flux.correlation_id")    // correlation ID of the message or save
	ProjectionKey       = attribute.Key("flux.projection")        // projection (or relay) name
	RelayKey            = attribute.Key("flux.relay")             // relay name (natsrelay.Config.Name)
	EventsReplayedKey   = attribute.Key("flux.events_replayed")   // events a load applied after its snapshot
	SnapshotUsedKey     = attribute.Key("flux.snapshot_used")     // whether a load started from a snapshot
	SnapshotsWrittenKey = attribute.Key("flux.snapshots_written") // snapshots a save wrote
	PositionKey         = attribute.Key("flux.position")          // last global position of a batch
	ConflictKey         = attribute.Key("flux.conflict")          // true on a concurrency conflict
	OutcomeKey          = attribute.Key("flux.outcome")           // "ok", "error" or "conflict"
	EventKey            = attribute.Key("flux.event")             // registered event name (notices)
	FromVersionKey      = attribute.Key("flux.from_version")      // stored version of an upcast event
	ToVersionKey        = attribute.Key("flux.to_version")        // current version of an upcast event
	OpKey               = attribute.Key("flux.op")                // "encrypt" or "decrypt" (personal data)
	ReasonKey           = attribute.Key("flux.reason")            // why personal data failed, e.g. "tampered"
)

// Outcomes, the values of OutcomeKey.
const (
	OutcomeOK       = "ok"
	OutcomeError    = "error"
	OutcomeConflict = "conflict"
)

// Span names, one per flux.OpKind, and span event names, one per
// flux.NoticeKind.
const (
	SpanCommand         = "flux.command"
	SpanQuery           = "flux.query"
	SpanSave            = "flux.save"
	SpanAppend          = "flux.append"
	SpanLoad            = "flux.load"
	SpanProjectionBatch = "flux.projection.batch"
	SpanRelayPublish    = "flux.relay.publish"

	EventUpcast             = "flux.upcast"
	EventPersonalDataFailed = "flux.personal_data_failure"
)

// Observer implements flux.Observer with OpenTelemetry traces and metrics.
// It is safe for concurrent use. Build it with New and set it in
// flux.Config.Observer (and flux.QueryBusConfig.Observer for queries).
type Observer struct {
	cfg    Config
	stamp  bool // a Clock was configured: stamp spans with it
	tracer trace.Tracer
	meter  metric.Meter
	sets   setCache

	commandDuration, queryDuration, saveDuration, appendDuration, loadDuration, batchDuration, relayDuration metric.Float64Histogram

	appendEvents, eventsReplayed metric.Int64Histogram

	loads, snapshotsWritten, conflicts, upcasts, piiFailures, projectionEvents, projectionErrors, relayEvents, relayErrors metric.Int64Counter

	lagEvents, projectionFailures metric.Int64ObservableGauge
	lagSeconds                    metric.Float64ObservableGauge
}

var _ flux.Observer = (*Observer)(nil)

// Buckets of the histograms: seconds from 100µs to 10s, and event counts.
var (
	durationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	countBuckets    = []float64{0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000}
)

// New returns an Observer reporting to cfg's providers. It returns an
// error matching ErrInvalidConfig for an invalid cfg, or the meter's error
// when an instrument cannot be created.
func New(cfg Config) (*Observer, error) {
	stamp := cfg.Clock != nil
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	o := &Observer{
		cfg:    cfg,
		stamp:  stamp,
		sets:   setCache{m: make(map[setKey]*attrSet)},
		tracer: cfg.TracerProvider.Tracer(ScopeName),
		meter:  cfg.MeterProvider.Meter(ScopeName),
	}
	var errs []error
	duration := func(name, desc string) metric.Float64Histogram {
		h, err := o.meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(durationBuckets...))
		errs = append(errs, err)
		return h
	}
	count := func(name, unit, desc string) metric.Int64Histogram {
		h, err := o.meter.Int64Histogram(name, metric.WithUnit(unit), metric.WithDescription(desc), metric.WithExplicitBucketBoundaries(countBuckets...))
		errs = append(errs, err)
		return h
	}
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := o.meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	o.commandDuration = duration("flux.command.duration", "Duration of command dispatches, unit of work included.")
	o.queryDuration = duration("flux.query.duration", "Duration of queries.")
	o.saveDuration = duration("flux.save.duration", "Duration of saves (encoding, encryption, append, publishing).")
	o.appendDuration = duration("flux.append.duration", "Duration of event store appends.")
	o.loadDuration = duration("flux.load.duration", "Duration of aggregate loads.")
	o.batchDuration = duration("flux.projection.batch.duration", "Duration of projection batches.")
	o.relayDuration = duration("flux.relay.publish.duration", "Duration of relay batches: publishing, waiting for the broker's acknowledgements, saving the checkpoint.")
	o.appendEvents = count("flux.append.events", "{event}", "Events stored per successful append.")
	o.eventsReplayed = count("flux.load.events_replayed", "{event}", "Events applied per successful load, after its snapshot.")
	o.loads = counter("flux.loads", "{load}", "Successful loads, by whether they started from a snapshot.")
	o.snapshotsWritten = counter("flux.snapshots.written", "{snapshot}", "Snapshots written by successful saves.")
	o.conflicts = counter("flux.conflicts", "{conflict}", "Appends refused by a concurrency conflict.")
	o.upcasts = counter("flux.upcasts", "{event}", "Stored events read through upcasters.")
	o.piiFailures = counter("flux.personal_data.failures", "{failure}", "Personal data that failed to encrypt or decrypt.")
	o.projectionEvents = counter("flux.projection.events", "{event}", "Events handled by projections in successful batches.")
	o.projectionErrors = counter("flux.projection.errors", "{error}", "Projection batches that failed.")
	o.relayEvents = counter("flux.relay.events", "{event}", "Events a relay published and the broker acknowledged.")
	o.relayErrors = counter("flux.relay.errors", "{error}", "Relay batches that failed (retried by the runner).")
	var err error
	o.lagEvents, err = o.meter.Int64ObservableGauge("flux.projection.lag.events", metric.WithUnit("{event}"),
		metric.WithDescription("Events in the log a projection has not handled yet (ObserveRunner)."))
	errs = append(errs, err)
	o.lagSeconds, err = o.meter.Float64ObservableGauge("flux.projection.lag", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest event a projection has not handled yet; 0 when caught up (ObserveRunner)."))
	errs = append(errs, err)
	o.projectionFailures, err = o.meter.Int64ObservableGauge("flux.projection.failures", metric.WithUnit("{failure}"),
		metric.WithDescription("Consecutive failures of a projection; 0 once a batch succeeds (ObserveRunner)."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("fluxotel: create instruments: %w", err)
	}
	return o, nil
}

// spanName returns the span name of an operation kind; kinds added to the
// core later get "flux.<kind>".
func spanName(k flux.OpKind) string {
	switch k {
	case flux.OpCommand:
		return SpanCommand
	case flux.OpQuery:
		return SpanQuery
	case flux.OpSave:
		return SpanSave
	case flux.OpAppend:
		return SpanAppend
	case flux.OpLoad:
		return SpanLoad
	case flux.OpProjectionBatch:
		return SpanProjectionBatch
	case flux.OpRelayPublish:
		return SpanRelayPublish
	}
	return "flux." + string(k)
}

// Start implements flux.Observer: it starts the operation's span as a
// child of the span in ctx and returns the context carrying it; the
// returned function ends the span and records the measurements.
func (o *Observer) Start(ctx context.Context, op flux.Operation) (context.Context, func(flux.Outcome)) {
	start := o.cfg.Clock()
	attrs := make([]attribute.KeyValue, 0, startAttrs(op))
	switch op.Kind {
	case flux.OpCommand:
		attrs = append(attrs, CommandKey.String(op.Name))
	case flux.OpQuery:
		attrs = append(attrs, QueryKey.String(op.Name))
	case flux.OpProjectionBatch:
		attrs = append(attrs, ProjectionKey.String(op.Name))
	case flux.OpRelayPublish:
		attrs = append(attrs, RelayKey.String(op.Name))
	}
	if op.AggregateType != "" {
		attrs = append(attrs, AggregateTypeKey.String(op.AggregateType))
	}
	if op.StreamID != "" {
		attrs = append(attrs, StreamIDKey.String(op.StreamID))
	}
	switch op.Kind {
	case flux.OpSave, flux.OpAppend, flux.OpProjectionBatch, flux.OpRelayPublish:
		attrs = append(attrs, EventCountKey.Int(op.Events))
	}
	if op.CorrelationID != "" {
		attrs = append(attrs, CorrelationIDKey.String(op.CorrelationID))
	}
	opts := make([]trace.SpanStartOption, 0, 4)
	opts = append(opts, trace.WithAttributes(o.filter(attrs)...))
	if o.stamp {
		opts = append(opts, trace.WithTimestamp(start))
	}
	switch op.Kind {
	case flux.OpProjectionBatch:
		opts = append(opts, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(o.links(op.Links)...))
	case flux.OpRelayPublish:
		opts = append(opts, trace.WithSpanKind(trace.SpanKindProducer), trace.WithLinks(o.links(op.Links)...))
	}
	ctx, span := o.tracer.Start(ctx, spanName(op.Kind), opts...)
	return ctx, func(out flux.Outcome) {
		end := o.cfg.Clock()
		o.measure(ctx, op, out, end.Sub(start).Seconds())
		o.endSpan(span, op, out, end)
	}
}

// startAttrs counts the attributes Start puts on op's span.
func startAttrs(op flux.Operation) int {
	n := 0
	switch op.Kind {
	case flux.OpCommand, flux.OpQuery, flux.OpSave, flux.OpAppend:
		n++ // the name or the event count
	case flux.OpProjectionBatch, flux.OpRelayPublish:
		n += 2 // the name and the event count
	}
	for _, s := range [...]string{op.AggregateType, op.StreamID, op.CorrelationID} {
		if s != "" {
			n++
		}
	}
	return n
}

// links returns the distinct span contexts found in the metadata of a
// batch's events, at most MaxLinks.
func (o *Observer) links(mds []map[string]string) []trace.Link {
	var links []trace.Link
	type key struct {
		t trace.TraceID
		s trace.SpanID
	}
	seen := make(map[key]struct{})
	for _, md := range mds {
		if len(md) == 0 {
			continue
		}
		sc := trace.SpanContextFromContext(o.cfg.Propagator.Extract(context.Background(), propagation.MapCarrier(md)))
		if !sc.IsValid() {
			continue
		}
		k := key{sc.TraceID(), sc.SpanID()}
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		links = append(links, trace.Link{SpanContext: sc})
		if len(links) == o.cfg.MaxLinks {
			break
		}
	}
	return links
}

// outcome classifies an operation's outcome for OutcomeKey.
func outcome(out flux.Outcome) string {
	switch {
	case out.Conflict:
		return OutcomeConflict
	case out.Err != nil:
		return OutcomeError
	}
	return OutcomeOK
}

// saved reports whether a save's events were stored: a *flux.PublishError
// comes after the commit.
func saved(err error) bool { return err == nil || errors.Is(err, flux.ErrPublish) }

func (o *Observer) measure(ctx context.Context, op flux.Operation, out flux.Outcome, secs float64) {
	oc := OutcomeKey.String(outcome(out))
	switch op.Kind {
	case flux.OpCommand:
		o.commandDuration.Record(ctx, secs, o.set(CommandKey.String(op.Name), oc).rec...)
	case flux.OpQuery:
		o.queryDuration.Record(ctx, secs, o.set(QueryKey.String(op.Name), oc).rec...)
	case flux.OpSave:
		// A save of several aggregates names no aggregate type.
		if op.AggregateType == "" {
			o.saveDuration.Record(ctx, secs, o.set(oc).rec...)
		} else {
			o.saveDuration.Record(ctx, secs, o.set(AggregateTypeKey.String(op.AggregateType), oc).rec...)
		}
		if out.SnapshotsWritten > 0 && saved(out.Err) {
			if op.AggregateType == "" {
				o.snapshotsWritten.Add(ctx, int64(out.SnapshotsWritten))
			} else {
				o.snapshotsWritten.Add(ctx, int64(out.SnapshotsWritten), o.set(AggregateTypeKey.String(op.AggregateType)).add...)
			}
		}
	case flux.OpAppend:
		o.appendDuration.Record(ctx, secs, o.set(oc).rec...)
		if out.Err == nil {
			o.appendEvents.Record(ctx, int64(op.Events))
		}
		if out.Conflict {
			o.conflicts.Add(ctx, 1)
		}
	case flux.OpLoad:
		agg := AggregateTypeKey.String(op.AggregateType)
		o.loadDuration.Record(ctx, secs, o.set(agg, oc).rec...)
		if out.Err == nil {
			o.loads.Add(ctx, 1, o.set(agg, SnapshotUsedKey.Bool(out.SnapshotUsed)).add...)
			o.eventsReplayed.Record(ctx, int64(out.EventsReplayed), o.set(agg).rec...)
		}
	case flux.OpProjectionBatch:
		p := ProjectionKey.String(op.Name)
		o.batchDuration.Record(ctx, secs, o.set(p, oc).rec...)
		if out.Err == nil {
			o.projectionEvents.Add(ctx, int64(op.Events), o.set(p).add...)
		} else {
			o.projectionErrors.Add(ctx, 1, o.set(p).add...)
		}
	case flux.OpRelayPublish:
		rl := RelayKey.String(op.Name)
		o.relayDuration.Record(ctx, secs, o.set(rl, oc).rec...)
		if out.Err == nil {
			o.relayEvents.Add(ctx, int64(op.Events), o.set(rl).add...)
		} else {
			o.relayErrors.Add(ctx, 1, o.set(rl).add...)
		}
	}
}

func (o *Observer) endSpan(span trace.Span, op flux.Operation, out flux.Outcome, end time.Time) {
	if !span.IsRecording() {
		span.End()
		return
	}
	attrs := make([]attribute.KeyValue, 0, 3)
	switch op.Kind {
	case flux.OpLoad:
		if out.Err == nil {
			attrs = append(attrs, EventsReplayedKey.Int(out.EventsReplayed), SnapshotUsedKey.Bool(out.SnapshotUsed))
		}
	case flux.OpSave:
		if saved(out.Err) {
			attrs = append(attrs, SnapshotsWrittenKey.Int(out.SnapshotsWritten))
		}
	case flux.OpProjectionBatch, flux.OpRelayPublish:
		attrs = append(attrs, PositionKey.Int64(out.Position))
	}
	if out.Conflict {
		attrs = append(attrs, ConflictKey.Bool(true))
	}
	if attrs = o.filter(attrs); len(attrs) > 0 {
		span.SetAttributes(attrs...)
	}
	if out.Err != nil {
		msg := o.errorMessage(out.Err)
		span.AddEvent("exception", o.at(end), trace.WithAttributes(
			attribute.String("exception.type", fmt.Sprintf("%T", out.Err)),
			attribute.String("exception.message", msg),
		))
		span.SetStatus(codes.Error, msg)
	}
	if o.stamp {
		span.End(trace.WithTimestamp(end))
	} else {
		span.End()
	}
}

// at stamps a span event with t when a Clock is configured; the zero time
// lets the SDK stamp it.
func (o *Observer) at(t time.Time) trace.EventOption {
	if !o.stamp {
		t = time.Time{}
	}
	return trace.WithTimestamp(t)
}

// sentinels classify errors on spans when their messages are withheld;
// the more specific ones first.
var sentinels = []error{
	flux.ErrConcurrencyConflict, flux.ErrAggregateNotFound, flux.ErrAggregateTypeMismatch,
	flux.ErrUnknownCommand, flux.ErrUnknownQuery, flux.ErrResultType, flux.ErrDuplicateCommand,
	flux.ErrUnknownEvent, flux.ErrUnknownAggregate, flux.ErrInvalidStreamID, flux.ErrEventTooLarge,
	flux.ErrInvalidAppend, flux.ErrCorruptEvent, flux.ErrUpcast,
	flux.ErrPersonalData, pii.ErrTampered, pii.ErrWrongSecret, pii.ErrForgotten, pii.ErrKeyNotFound,
	pii.ErrNoSubject, pii.ErrUnsupportedField, pii.ErrBadEnvelope,
	flux.ErrStoreClosed, flux.ErrStoreUnavailable, flux.ErrPublish, flux.ErrValueTaken, flux.ErrNotOwner,
	flux.ErrNoUnitOfWork, projection.ErrCheckpointMoved,
	context.Canceled, context.DeadlineExceeded,
}

// errorMessage is what a span says of err: its message if configured,
// else the sentinels it matches, which never quote values.
func (o *Observer) errorMessage(err error) string {
	if o.cfg.RecordErrorMessages {
		return err.Error()
	}
	var matched []string
	for _, s := range sentinels {
		if errors.Is(err, s) {
			matched = append(matched, s.Error())
		}
	}
	if len(matched) == 0 {
		return "error (message withheld; see fluxotel.Config.RecordErrorMessages)"
	}
	return strings.Join(matched, "; ")
}

// Notice implements flux.Observer: it counts the point event and adds it
// as an event to the span in ctx (the load or projection batch that read
// the event), if any.
func (o *Observer) Notice(ctx context.Context, n flux.Notice) {
	var attrs []attribute.KeyValue
	name := "flux." + string(n.Kind)
	switch n.Kind {
	case flux.NoticeUpcast:
		name = EventUpcast
		o.upcasts.Add(ctx, 1, o.set(EventKey.String(n.Event)).add...)
		attrs = []attribute.KeyValue{EventKey.String(n.Event), FromVersionKey.Int(n.FromVersion), ToVersionKey.Int(n.ToVersion)}
	case flux.NoticePersonalData:
		name = EventPersonalDataFailed
		o.piiFailures.Add(ctx, 1, o.set(OpKey.String(n.Op), ReasonKey.String(n.Reason)).add...)
		attrs = []attribute.KeyValue{EventKey.String(n.Event), OpKey.String(n.Op), ReasonKey.String(n.Reason)}
	default:
		attrs = []attribute.KeyValue{EventKey.String(n.Event)}
	}
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent(name, o.at(o.cfg.Clock()), trace.WithAttributes(o.filter(attrs)...))
	}
}

// TraceMetadata implements flux.Observer: it returns the span context of
// ctx as the propagator writes it (by default traceparent and tracestate),
// or nil when ctx carries none.
func (o *Observer) TraceMetadata(ctx context.Context) map[string]string {
	if _, w3c := o.cfg.Propagator.(propagation.TraceContext); w3c && !trace.SpanContextFromContext(ctx).IsValid() {
		return nil // what TraceContext would write: nothing
	}
	c := make(propagation.MapCarrier, 2)
	o.cfg.Propagator.Inject(ctx, c)
	if len(c) == 0 {
		return nil
	}
	return c
}

// filter applies the configured attribute filter.
func (o *Observer) filter(attrs []attribute.KeyValue) []attribute.KeyValue {
	if o.cfg.AttributeFilter == nil {
		return attrs
	}
	kept := attrs[:0]
	for _, kv := range attrs {
		if o.cfg.AttributeFilter(kv) {
			kept = append(kept, kv)
		}
	}
	return kept
}

// setKey identifies the attributes of a measurement (at most three).
type setKey struct {
	n  int
	kv [3]attribute.KeyValue
}

// maxCachedSets bounds the cache of attribute sets. Measurements carry
// registered names and outcomes only, so a real application stays far
// below it; past it, sets are built at every measurement.
const maxCachedSets = 10_000

// setCache keeps the options of every attribute combination seen, so
// that a measurement allocates nothing.
type setCache struct {
	mu sync.RWMutex
	m  map[setKey]*attrSet
}

// attrSet holds the option of one attribute set as Record, Add and
// Observe take it.
type attrSet struct {
	rec []metric.RecordOption
	add []metric.AddOption
	obs []metric.ObserveOption
}

// set returns the options of attrs, filtered.
func (o *Observer) set(attrs ...attribute.KeyValue) *attrSet {
	if len(attrs) > len(setKey{}.kv) {
		return o.newSet(attrs)
	}
	var k setKey
	k.n = copy(k.kv[:], attrs)
	o.sets.mu.RLock()
	s, ok := o.sets.m[k]
	o.sets.mu.RUnlock()
	if ok {
		return s
	}
	s = o.newSet(attrs)
	o.sets.mu.Lock()
	if len(o.sets.m) < maxCachedSets {
		o.sets.m[k] = s
	}
	o.sets.mu.Unlock()
	return s
}

func (o *Observer) newSet(attrs []attribute.KeyValue) *attrSet {
	set, _ := attribute.NewSetWithFiltered(slices.Clone(attrs), o.cfg.AttributeFilter)
	opt := metric.WithAttributeSet(set)
	return &attrSet{rec: []metric.RecordOption{opt}, add: []metric.AddOption{opt}, obs: []metric.ObserveOption{opt}}
}
