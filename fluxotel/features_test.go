package fluxotel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/fluxotel"
	"github.com/fluxcapacitor/flux/projection"
)

func TestNewValidatesTheConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		cfg     fluxotel.Config
		wantErr error
	}{
		{"the zero config uses the global providers", fluxotel.Config{}, nil},
		{"a positive MaxLinks is kept", fluxotel.Config{MaxLinks: 3}, nil},
		{"a negative MaxLinks is invalid", fluxotel.Config{MaxLinks: -1}, fluxotel.ErrInvalidConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			obs, err := fluxotel.New(c.cfg)
			if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
				t.Fatalf("New: %v, want %v", err, c.wantErr)
			}
			if err != nil {
				return
			}
			// Usable with whatever providers it got (the globals are no-ops).
			ctx, end := obs.Start(t.Context(), flux.Operation{Kind: flux.OpSave, Events: 1})
			obs.Notice(ctx, flux.Notice{Kind: flux.NoticeUpcast, Event: "E", FromVersion: 1, ToVersion: 2})
			end(flux.Outcome{Err: errors.New("x")})
			if err := obs.ObserveRunner(nil); err == nil {
				t.Fatal("ObserveRunner(nil) did not fail")
			}
		})
	}
	t.Run("NewPrometheus refuses a MeterProvider of the caller", func(t *testing.T) {
		t.Parallel()
		_, _, err := fluxotel.NewPrometheus(fluxotel.Config{MeterProvider: sdkmetric.NewMeterProvider()})
		if !errors.Is(err, fluxotel.ErrInvalidConfig) {
			t.Fatalf("NewPrometheus: %v, want %v", err, fluxotel.ErrInvalidConfig)
		}
	})
}

func TestTraceMetadata(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, fluxotel.Config{})
	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	sid, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	ts, err := trace.ParseTraceState("vendor=abc")
	if err != nil {
		t.Fatal(err)
	}
	remote := func(flags trace.TraceFlags, state trace.TraceState) context.Context {
		return trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: sid, TraceFlags: flags, TraceState: state, Remote: true}))
	}
	cases := []struct {
		name string
		ctx  context.Context
		want map[string]string
	}{
		{"no span: nothing", context.Background(), nil},
		{"a sampled span", remote(trace.FlagsSampled, trace.TraceState{}),
			map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
		{"an unsampled span, with trace state", remote(0, ts),
			map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", "tracestate": "vendor=abc"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := tel.obs.TraceMetadata(c.ctx)
			if fmt.Sprint(got) != fmt.Sprint(c.want) || (got == nil) != (c.want == nil) {
				t.Fatalf("TraceMetadata = %v, want %v", got, c.want)
			}
		})
	}
	t.Run("the span of an operation", func(t *testing.T) {
		t.Parallel()
		ctx, end := tel.obs.Start(t.Context(), flux.Operation{Kind: flux.OpSave})
		defer end(flux.Outcome{})
		sc := trace.SpanContextFromContext(ctx)
		want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
		if got := tel.obs.TraceMetadata(ctx)["traceparent"]; got != want {
			t.Fatalf("traceparent %q, want %q", got, want)
		}
	})
}

// traceparent returns the metadata of an event saved under span i.
func traceparent(i int) map[string]string {
	return map[string]string{"traceparent": fmt.Sprintf("00-%032x-%016x-01", i, i), "user_key": "kept"}
}

func TestProjectionBatchLinks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		maxLinks int
		links    []map[string]string
		want     []string // span IDs
	}{
		{"none without metadata", 0, []map[string]string{nil, {}, {"user_key": "x"}}, nil},
		{"one per event", 0, []map[string]string{traceparent(1), traceparent(2)}, []string{"0000000000000001", "0000000000000002"}},
		{"events of one save share a link", 0, []map[string]string{traceparent(1), traceparent(1), traceparent(2), traceparent(1)}, []string{"0000000000000001", "0000000000000002"}},
		{"a malformed traceparent is skipped", 0, []map[string]string{{"traceparent": "00-zz-yy-01"}, traceparent(3)}, []string{"0000000000000003"}},
		{"at most MaxLinks, the first ones", 2, []map[string]string{traceparent(1), traceparent(2), traceparent(3)}, []string{"0000000000000001", "0000000000000002"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tel := newTelemetry(t, fluxotel.Config{MaxLinks: c.maxLinks})
			_, end := tel.obs.Start(t.Context(), flux.Operation{Kind: flux.OpProjectionBatch, Name: "p", Events: len(c.links), Links: c.links})
			end(flux.Outcome{Position: 9})
			spans := tel.spans.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			var got []string
			for _, l := range spans[0].Links() {
				if !l.SpanContext.IsRemote() || !l.SpanContext.IsSampled() {
					t.Errorf("link %v is not a sampled remote span context", l.SpanContext)
				}
				got = append(got, l.SpanContext.SpanID().String())
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("links to %v, want %v", got, c.want)
			}
		})
	}
}

func TestAttributeFilterDropsAttributes(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, fluxotel.Config{AttributeFilter: fluxotel.ExceptKeys(fluxotel.StreamIDKey, fluxotel.AggregateTypeKey), Clock: stepClock()})
	e := newEnv(t, tel.obs)
	m := new(Member)
	m.SetID("someone@example.com") // a stream ID that reveals a person
	flux.Raise(m, Credited{Points: 1})
	if err := e.repo.Save(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if _, err := flux.Load[*Member](t.Context(), e.repo, m.ID()); err != nil {
		t.Fatal(err)
	}
	if found := personalData(t, tel, "someone@example.com", "Member"); len(found) > 0 {
		t.Fatalf("filtered attributes remain: %q", found)
	}
	got := render(tel.spans.Ended())
	for i := range got {
		_, got[i], _ = strings.Cut(got[i], "internal ")
	}
	diff(t, "spans", got, []string{
		"1ms {flux.event_count=1}",
		"3ms {flux.event_count=1,flux.snapshots_written=0}",
		"1ms {flux.events_replayed=1,flux.snapshot_used=false}",
	})
	metrics := tel.collect(t)
	if !slices.Contains(metrics, "flux.loads[{load}]{flux.snapshot_used=false} 1") {
		t.Fatalf("loads not counted without the dropped attributes:\n%s", strings.Join(metrics, "\n"))
	}
}

func TestErrorMessages(t *testing.T) {
	t.Parallel()
	errTaken := errors.New("e-mail " + email + " is taken") // an application error quoting personal data
	cases := []struct {
		name           string
		record         bool
		err            error
		wantStatus     string
		wantPersonal   bool
		wantConflicted bool
	}{
		{"an application error is withheld", false, errTaken,
			"error (message withheld; see fluxotel.Config.RecordErrorMessages)", false, false},
		{"a flux error is named by its sentinels", false, fmt.Errorf("outer: %w", &flux.ConflictError{StreamID: "m1", Expected: 1, Actual: 2}),
			"flux: concurrency conflict", false, true},
		{"a cancellation is named", false, fmt.Errorf("load: %w", context.Canceled), "context canceled", false, false},
		{"messages are recorded when configured", true, errTaken, errTaken.Error(), true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tel := newTelemetry(t, fluxotel.Config{RecordErrorMessages: c.record, Clock: stepClock()})
			e := newEnv(t, tel.obs)
			bus, err := flux.NewCommandBus(flux.CommandBusConfig{Repository: e.repo})
			if err != nil {
				t.Fatal(err)
			}
			_ = flux.HandleCommand(bus, func(context.Context, UpdateProfile) error { return c.err })
			if err := bus.Dispatch(t.Context(), UpdateProfile{ID: "m1", Email: email}); !errors.Is(err, c.err) {
				t.Fatalf("dispatch: %v", err)
			}
			spans := tel.spans.Ended()
			if len(spans) != 1 || spans[0].Status().Description != c.wantStatus {
				t.Fatalf("spans:\n%s\nwant status %q", strings.Join(render(spans), "\n"), c.wantStatus)
			}
			if found := personalData(t, tel, email); (len(found) > 0) != c.wantPersonal {
				t.Fatalf("personal data found: %q, want found: %v", found, c.wantPersonal)
			}
			outcome := fluxotel.OutcomeError
			if c.wantConflicted {
				outcome = fluxotel.OutcomeConflict
			}
			want := "flux.command.duration[s]{flux.command=fluxotel_test.UpdateProfile,flux.outcome=" + outcome + "} count=1 sum=0.001"
			if got := tel.collect(t); !slices.Equal(got, []string{want}) {
				t.Fatalf("metrics %q, want %q", got, want)
			}
		})
	}
}

// A save that conflicts wrote no snapshot, though one was due.
func TestConflictWritesNoSnapshot(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, fluxotel.Config{})
	e := newEnv(t, tel.obs)
	var copies []*Member
	for range 2 {
		m := new(Member)
		m.SetID("m1")
		flux.Raise(m, Credited{Points: 1})
		flux.Raise(m, Credited{Points: 2})
		copies = append(copies, m)
	}
	if err := e.repo.Save(t.Context(), copies[0]); err != nil {
		t.Fatal(err)
	}
	if err := e.repo.Save(t.Context(), copies[1]); !errors.Is(err, flux.ErrConcurrencyConflict) {
		t.Fatalf("second save: %v", err)
	}
	var written []string
	for _, s := range tel.spans.Ended() {
		if s.Name() == fluxotel.SpanSave {
			written = append(written, attrs(s.Attributes()))
		}
	}
	diff(t, "saves", written, []string{
		"{flux.aggregate_type=Member,flux.event_count=2,flux.snapshots_written=1,flux.stream_id=m1}",
		"{flux.aggregate_type=Member,flux.conflict=true,flux.event_count=2,flux.stream_id=m1}",
	})
	if got := tel.collect(t); !slices.Contains(got, "flux.snapshots.written[{snapshot}]{flux.aggregate_type=Member} 1") {
		t.Fatalf("metrics:\n%s", strings.Join(got, "\n"))
	}
}

func TestNoticesAndKindsItDoesNotKnow(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, fluxotel.Config{Clock: stepClock()})
	ctx := context.Background() // no span: a projection's subscription reading
	tel.obs.Notice(ctx, flux.Notice{Kind: flux.NoticeUpcast, Event: "Credited", FromVersion: 1, ToVersion: 2})
	tel.obs.Notice(ctx, flux.Notice{Kind: flux.NoticePersonalData, Op: "encrypt", Event: "ProfileUpdated", Reason: "key_store"})
	tel.obs.Notice(ctx, flux.Notice{Kind: "future_notice", Event: "Credited"})
	sctx, end := tel.obs.Start(ctx, flux.Operation{Kind: "future.op", Name: "x"})
	tel.obs.Notice(sctx, flux.Notice{Kind: "future_notice", Event: "Credited"})
	end(flux.Outcome{})
	diff(t, "spans", render(tel.spans.Ended()), []string{
		"#0 flux.future.op trace=1 parent=- internal 2ms {} events=[flux.future_notice{flux.event=Credited}]",
	})
	diff(t, "metrics", tel.collect(t), []string{
		"flux.personal_data.failures[{failure}]{flux.op=encrypt,flux.reason=key_store} 1",
		"flux.upcasts[{event}]{flux.event=Credited} 1",
	})
}

// Observed operations from many goroutines (run with -race).
func TestConcurrentOperations(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, fluxotel.Config{})
	e := newEnv(t, tel.obs)
	const workers, rounds = 8, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			id := fmt.Sprintf("w%d", w)
			for r := range rounds {
				m, err := flux.Load[*Member](context.Background(), e.repo, id)
				if errors.Is(err, flux.ErrAggregateNotFound) {
					m = new(Member)
					m.SetID(id)
				} else if err != nil {
					t.Error(err)
					return
				}
				flux.Raise(m, Credited{Points: r})
				if err := e.repo.Save(context.Background(), m); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := tel.collect(t)
	for _, want := range []string{
		fmt.Sprintf("flux.append.events[{event}]{} count=%d sum=%d", workers*rounds, workers*rounds),
		fmt.Sprintf("flux.load.duration[s]{flux.aggregate_type=Member,flux.outcome=error} count=%d", workers),
		fmt.Sprintf("flux.loads[{load}]{flux.aggregate_type=Member,flux.snapshot_used=true} %d", workers*(rounds-2)),
		fmt.Sprintf("flux.snapshots.written[{snapshot}]{flux.aggregate_type=Member} %d", workers*rounds/2),
	} {
		if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, want) }) {
			t.Errorf("no %q in:\n%s", want, strings.Join(got, "\n"))
		}
	}
	if n := len(tel.spans.Ended()); n != workers*rounds*3 {
		t.Errorf("%d spans, want %d", n, workers*rounds*3)
	}
}

func TestPrometheusHandlerServesTheMetrics(t *testing.T) {
	t.Parallel()
	obs, handler, err := fluxotel.NewPrometheus(fluxotel.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, obs)
	m := new(Member)
	m.SetID("m1")
	flux.Raise(m, Credited{Points: 1})
	if err := e.repo.Save(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if _, err := flux.Load[*Member](t.Context(), e.repo, "m1"); err != nil {
		t.Fatal(err)
	}
	runner, err := projection.NewRunner(projection.RunnerConfig{Repository: e.repo})
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Add(projection.New("relay-orders", func(context.Context, flux.Envelope) error { return nil })); err != nil {
		t.Fatal(err)
	}
	if err := obs.ObserveRunner(runner); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: %d %v", resp.StatusCode, err)
	}
	// Each sample line: name{labels} value. Labels include the scope's.
	samples := map[string]bool{}
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "flux_") {
			samples[strings.TrimSpace(line)] = true
		}
	}
	has := func(name string, labels []string, value string) bool {
		for s := range samples {
			series, v, _ := strings.Cut(s, " ")
			if !strings.HasPrefix(series, name+"{") || v != value {
				continue
			}
			if !slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(series, l) }) {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		name   string
		labels []string
		value  string
	}{
		{"flux_loads_total", []string{`flux_aggregate_type="Member"`, `flux_snapshot_used="false"`}, "1"},
		{"flux_append_duration_seconds_count", []string{`flux_outcome="ok"`}, "1"},
		{"flux_load_events_replayed_count", []string{`flux_aggregate_type="Member"`}, "1"},
		{"flux_load_events_replayed_sum", []string{`flux_aggregate_type="Member"`}, "1"},
		{"flux_projection_lag_events", []string{`flux_projection="relay-orders"`}, "1"},
		{"flux_projection_failures", []string{`flux_projection="relay-orders"`}, "0"},
	} {
		if !has(c.name, c.labels, c.value) {
			t.Errorf("no %s%v %s in:\n%s", c.name, c.labels, c.value, body)
		}
	}
	if !strings.Contains(string(body), "go_goroutines") {
		t.Error("the Go runtime collector is missing")
	}
}

// The propagator is configurable: a carrier of another format works too.
func TestCustomPropagator(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, fluxotel.Config{Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})})
	ctx, end := tel.obs.Start(t.Context(), flux.Operation{Kind: flux.OpSave})
	md := tel.obs.TraceMetadata(ctx)
	end(flux.Outcome{})
	_, end = tel.obs.Start(t.Context(), flux.Operation{Kind: flux.OpProjectionBatch, Name: "p", Links: []map[string]string{md}})
	end(flux.Outcome{})
	spans := tel.spans.Ended()
	if len(spans) != 2 || len(spans[1].Links()) != 1 || spans[1].Links()[0].SpanContext.SpanID() != spans[0].SpanContext().SpanID() {
		t.Fatalf("spans:\n%s", strings.Join(render(spans), "\n"))
	}
}

func TestRelayPublish(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, fluxotel.Config{Clock: stepClock()})
	links := []map[string]string{traceparent(1), traceparent(1), traceparent(2)}
	_, end := tel.obs.Start(t.Context(), flux.Operation{Kind: flux.OpRelayPublish, Name: "natsrelay", Events: 3, Links: links})
	end(flux.Outcome{Position: 7})
	_, end = tel.obs.Start(t.Context(), flux.Operation{Kind: flux.OpRelayPublish, Name: "natsrelay", Events: 2, Links: links[:2]})
	end(flux.Outcome{Err: errors.New("not acknowledged"), Position: 9})
	spans := tel.spans.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	diff(t, "spans", render(spans), []string{
		"#0 flux.relay.publish trace=1 parent=- producer 1ms {flux.event_count=3,flux.position=7,flux.relay=natsrelay} links=[?{} ?{}]",
		`#1 flux.relay.publish trace=2 parent=- producer 1ms {flux.event_count=2,flux.position=9,flux.relay=natsrelay} Error:"error (message withheld; see fluxotel.Config.RecordErrorMessages)" events=[exception{exception.message=error (message withheld; see fluxotel.Config.RecordErrorMessages),exception.type=*errors.errorString}] links=[?{}]`,
	})
	if n := len(spans[0].Links()); n != 2 {
		t.Errorf("%d links, want 2 (one per writing span)", n)
	}
	metrics := tel.collect(t)
	for _, want := range []string{
		"flux.relay.events[{event}]{flux.relay=natsrelay} 3",
		"flux.relay.errors[{error}]{flux.relay=natsrelay} 1",
		"flux.relay.publish.duration[s]{flux.outcome=ok,flux.relay=natsrelay} count=1 sum=0.001",
		"flux.relay.publish.duration[s]{flux.outcome=error,flux.relay=natsrelay} count=1 sum=0.001",
	} {
		if !slices.Contains(metrics, want) {
			t.Errorf("no %q in:\n%s", want, strings.Join(metrics, "\n"))
		}
	}
}
