package fluxotel_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/fluxotel"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

// Personal data of the scenario: it must appear on no span and no metric.
const (
	email = "ada@example.com"
	name  = "Ada Lovelace"
)

// TestScenario scripts every operation and notice the core reports and
// checks the exact spans and measurements they produce.
func TestScenario(t *testing.T) {
	t.Parallel()
	tel := newTelemetry(t, fluxotel.Config{Clock: stepClock()})
	e := newEnv(t, tel.obs)
	ctx := t.Context()

	// An event stored by an old version of the application: Credited v1.
	appendRaw(t, e, "m1", "Credited", 1, []byte(`{"pts":5}`), "0190a6f0-0000-7000-8000-000000000001", t0)

	// A command that loads (through the upcaster) and saves, writing a
	// snapshot (every 2 versions).
	bus, err := flux.NewCommandBus(flux.CommandBusConfig{Repository: e.repo})
	if err != nil {
		t.Fatal(err)
	}
	if err := flux.HandleCommand(bus, func(ctx context.Context, c UpdateProfile) error {
		m, err := flux.Load[*Member](ctx, e.repo, c.ID)
		if err != nil {
			return err
		}
		flux.Raise(m, ProfileUpdated{MemberID: c.ID, Email: c.Email, Name: c.Name})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Dispatch(flux.WithCorrelationID(ctx, "corr-1"), UpdateProfile{ID: "m1", Email: email, Name: name}); err != nil {
		t.Fatal(err)
	}

	// Two loads from the snapshot, and two saves racing: the second conflicts.
	a, err := flux.Load[*Member](ctx, e.repo, "m1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := flux.Load[*Member](ctx, e.repo, "m1")
	if err != nil {
		t.Fatal(err)
	}
	flux.Raise(a, Credited{Points: 3})
	flux.Raise(b, Credited{Points: 4})
	if err := e.repo.Save(flux.WithCorrelationID(ctx, "corr-2"), a); err != nil {
		t.Fatal(err)
	}
	if err := e.repo.Save(flux.WithCorrelationID(ctx, "corr-3"), b); !errors.Is(err, flux.ErrConcurrencyConflict) {
		t.Fatalf("second save: %v, want a concurrency conflict", err)
	}

	// A query loading from the snapshot plus one event.
	qbus := flux.NewQueryBus(flux.QueryBusConfig{Observer: tel.obs})
	if err := flux.HandleQuery(qbus, func(ctx context.Context, q Points) (int, error) {
		m, err := flux.Load[*Member](ctx, e.repo, q.ID)
		if err != nil {
			return 0, err
		}
		return m.Points, nil
	}); err != nil {
		t.Fatal(err)
	}
	if pts, err := flux.Ask[int](flux.WithCorrelationID(ctx, "corr-4"), qbus, Points{ID: "m1"}); err != nil || pts != 8 {
		t.Fatalf("points = %d, %v; want 8", pts, err)
	}

	// Two projections of the profile updates: one succeeds, one fails.
	runner, err := projection.NewRunner(projection.RunnerConfig{Repository: e.repo, Clock: func() time.Time { return t0.Add(100 * time.Second) }})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	reset := projection.OnReset(func(context.Context) error { return nil })
	profiles := projection.New("profiles", func(ctx context.Context, ev flux.Envelope) error {
		seen = append(seen, ev.StreamID+"/"+ev.Event.(ProfileUpdated).Name)
		return nil
	}, projection.Events("ProfileUpdated"), reset)
	errDown := errors.New("read model of " + email + " unavailable") // an application error quoting personal data
	broken := projection.New("broken", func(context.Context, flux.Envelope) error { return errDown },
		projection.Events("ProfileUpdated"), reset)
	for _, p := range []projection.Projection{profiles, broken} {
		if err := runner.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := runner.Rebuild(ctx, "profiles", projection.ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] != "m1/"+name {
		t.Fatalf("profiles saw %q", seen)
	}
	if err := runner.Rebuild(ctx, "broken", projection.ReplayOptions{}); !errors.Is(err, errDown) {
		t.Fatalf("rebuild of broken: %v, want %v", err, errDown)
	}

	// A stored payload tampered with: its personal data fails to decrypt.
	var stored flux.Record
	for rec, err := range e.store.ReadStream(ctx, "m1", flux.ReadStreamOptions{FromVersion: 2, ToVersion: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		stored = rec
	}
	appendRaw(t, e, "m9", "ProfileUpdated", 1, tamper(t, stored.Payload), "0190a6f0-0000-7000-8000-000000000009", t0.Add(10*time.Second))
	if _, err := flux.Load[*Member](ctx, e.repo, "m9"); !errors.Is(err, pii.ErrTampered) {
		t.Fatalf("load of a tampered event: %v, want %v", err, pii.ErrTampered)
	}

	// The stored trace context is the save span's, in the command's trace.
	spans := tel.spans.Ended()
	if got, want := stored.Metadata.Extra["traceparent"], "00-"+spans[2].SpanContext().TraceID().String()+"-"+spans[2].SpanContext().SpanID().String()+"-01"; got != want {
		t.Errorf("stored traceparent %q, want %q (the flux.save span)", got, want)
	}

	diff(t, "spans", render(spans), []string{
		// The command: load (upcast), then save -> append.
		"#0 flux.load trace=1 parent=#3 internal 2ms {flux.aggregate_type=Member,flux.correlation_id=corr-1,flux.events_replayed=1,flux.snapshot_used=false,flux.stream_id=m1} events=[flux.upcast{flux.event=Credited,flux.from_version=1,flux.to_version=2}]",
		"#1 flux.append trace=1 parent=#2 internal 1ms {flux.aggregate_type=Member,flux.correlation_id=corr-1,flux.event_count=1,flux.stream_id=m1}",
		"#2 flux.save trace=1 parent=#3 internal 3ms {flux.aggregate_type=Member,flux.correlation_id=corr-1,flux.event_count=1,flux.snapshots_written=1,flux.stream_id=m1}",
		"#3 flux.command trace=1 parent=- internal 8ms {flux.command=fluxotel_test.UpdateProfile,flux.correlation_id=corr-1}",
		// Loads from the snapshot; a save; a conflicting save.
		"#4 flux.load trace=2 parent=- internal 1ms {flux.aggregate_type=Member,flux.events_replayed=0,flux.snapshot_used=true,flux.stream_id=m1}",
		"#5 flux.load trace=3 parent=- internal 1ms {flux.aggregate_type=Member,flux.events_replayed=0,flux.snapshot_used=true,flux.stream_id=m1}",
		"#6 flux.append trace=4 parent=#7 internal 1ms {flux.aggregate_type=Member,flux.correlation_id=corr-2,flux.event_count=1,flux.stream_id=m1}",
		"#7 flux.save trace=4 parent=- internal 3ms {flux.aggregate_type=Member,flux.correlation_id=corr-2,flux.event_count=1,flux.snapshots_written=0,flux.stream_id=m1}",
		`#8 flux.append trace=5 parent=#9 internal 1ms {flux.aggregate_type=Member,flux.conflict=true,flux.correlation_id=corr-3,flux.event_count=1,flux.stream_id=m1} Error:"flux: concurrency conflict" events=[exception{exception.message=flux: concurrency conflict,exception.type=*flux.ConflictError}]`,
		`#9 flux.save trace=5 parent=- internal 3ms {flux.aggregate_type=Member,flux.conflict=true,flux.correlation_id=corr-3,flux.event_count=1,flux.stream_id=m1} Error:"flux: concurrency conflict" events=[exception{exception.message=flux: concurrency conflict,exception.type=*flux.ConflictError}]`,
		// The query.
		"#10 flux.load trace=6 parent=#11 internal 1ms {flux.aggregate_type=Member,flux.correlation_id=corr-4,flux.events_replayed=1,flux.snapshot_used=true,flux.stream_id=m1}",
		"#11 flux.query trace=6 parent=- internal 3ms {flux.correlation_id=corr-4,flux.query=fluxotel_test.Points}",
		// The projection batches, linked to the save in the command's trace.
		"#12 flux.projection.batch trace=7 parent=- consumer 1ms {flux.event_count=1,flux.position=3,flux.projection=profiles} links=[#2{}]",
		`#13 flux.projection.batch trace=8 parent=- consumer 1ms {flux.event_count=1,flux.position=3,flux.projection=broken} Error:"error (message withheld; see fluxotel.Config.RecordErrorMessages)" events=[exception{exception.message=error (message withheld; see fluxotel.Config.RecordErrorMessages),exception.type=*fmt.wrapError}] links=[#2{}]`,
		// The tampered event.
		`#14 flux.load trace=9 parent=- internal 2ms {flux.aggregate_type=Member,flux.stream_id=m9} Error:"flux: personal data; pii: ciphertext does not authenticate" events=[flux.personal_data_failure{flux.event=ProfileUpdated,flux.op=decrypt,flux.reason=tampered} exception{exception.message=flux: personal data; pii: ciphertext does not authenticate,exception.type=*flux.EventError}]`,
	})

	if err := tel.obs.ObserveRunner(runner); err != nil {
		t.Fatal(err)
	}
	got := tel.collect(t)
	diff(t, "metrics", got, []string{
		"flux.append.duration[s]{flux.outcome=conflict} count=1 sum=0.001",
		"flux.append.duration[s]{flux.outcome=ok} count=2 sum=0.002",
		"flux.append.events[{event}]{} count=2 sum=2",
		"flux.command.duration[s]{flux.command=fluxotel_test.UpdateProfile,flux.outcome=ok} count=1 sum=0.008",
		"flux.conflicts[{conflict}]{} 1",
		"flux.load.duration[s]{flux.aggregate_type=Member,flux.outcome=error} count=1 sum=0.002",
		"flux.load.duration[s]{flux.aggregate_type=Member,flux.outcome=ok} count=4 sum=0.005",
		"flux.load.events_replayed[{event}]{flux.aggregate_type=Member} count=4 sum=2",
		"flux.loads[{load}]{flux.aggregate_type=Member,flux.snapshot_used=false} 1",
		"flux.loads[{load}]{flux.aggregate_type=Member,flux.snapshot_used=true} 3",
		"flux.personal_data.failures[{failure}]{flux.op=decrypt,flux.reason=tampered} 1",
		"flux.projection.batch.duration[s]{flux.outcome=error,flux.projection=broken} count=1 sum=0.001",
		"flux.projection.batch.duration[s]{flux.outcome=ok,flux.projection=profiles} count=1 sum=0.001",
		"flux.projection.errors[{error}]{flux.projection=broken} 1",
		"flux.projection.events[{event}]{flux.projection=profiles} 1",
		"flux.projection.failures[{failure}]{flux.projection=broken} 0",
		"flux.projection.failures[{failure}]{flux.projection=profiles} 0",
		// profiles handled up to position 3 of 4; broken never moved.
		"flux.projection.lag.events[{event}]{flux.projection=broken} 4",
		"flux.projection.lag.events[{event}]{flux.projection=profiles} 1",
		"flux.projection.lag[s]{flux.projection=broken} 100",
		"flux.projection.lag[s]{flux.projection=profiles} 90",
		"flux.query.duration[s]{flux.outcome=ok,flux.query=fluxotel_test.Points} count=1 sum=0.003",
		"flux.save.duration[s]{flux.aggregate_type=Member,flux.outcome=conflict} count=1 sum=0.003",
		"flux.save.duration[s]{flux.aggregate_type=Member,flux.outcome=ok} count=2 sum=0.006",
		"flux.snapshots.written[{snapshot}]{flux.aggregate_type=Member} 1",
		"flux.upcasts[{event}]{flux.event=Credited} 1",
	})

	t.Run("no personal data on spans or metrics", func(t *testing.T) {
		if found := personalData(t, tel, email, name, "Lovelace"); len(found) > 0 {
			t.Errorf("telemetry contains personal data:\n\t%s", strings.Join(found, "\n\t"))
		}
	})
}

// personalData returns the texts of spans (name, attributes, events,
// links, status) and metrics (name, attributes, exemplars) that contain
// one of the values.
func personalData(t *testing.T, tel *telemetry, values ...string) []string {
	t.Helper()
	var texts, found []string
	add := func(kvs ...attribute.KeyValue) {
		for _, kv := range kvs {
			texts = append(texts, string(kv.Key), kv.Value.Emit())
		}
	}
	spans := tel.spans.Ended()
	if len(spans) == 0 {
		t.Fatal("no spans to check")
	}
	for _, s := range spans {
		texts = append(texts, s.Name(), s.Status().Description)
		add(s.Attributes()...)
		add(s.Resource().Attributes()...)
		for _, e := range s.Events() {
			texts = append(texts, e.Name)
			add(e.Attributes...)
		}
		for _, l := range s.Links() {
			texts = append(texts, l.SpanContext.TraceState().String())
			add(l.Attributes...)
		}
	}
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	add(rm.Resource.Attributes()...)
	n := 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			texts = append(texts, m.Name, m.Description, m.Unit)
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					add(p.Attributes.ToSlice()...)
					n++
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					add(p.Attributes.ToSlice()...)
					n++
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					add(p.Attributes.ToSlice()...)
					n++
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					add(p.Attributes.ToSlice()...)
					for _, ex := range p.Exemplars {
						add(ex.FilteredAttributes...)
					}
					n++
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					add(p.Attributes.ToSlice()...)
					for _, ex := range p.Exemplars {
						add(ex.FilteredAttributes...)
					}
					n++
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no data points to check")
	}
	for _, text := range texts {
		for _, v := range values {
			if strings.Contains(text, v) {
				found = append(found, text)
				break
			}
		}
	}
	return found
}

// appendRaw stores an event as an older application version would have.
func appendRaw(t testing.TB, e *env, stream, event string, version int, payload []byte, id string, at time.Time) {
	t.Helper()
	_, err := e.store.Append(context.Background(), flux.AppendRequest{Streams: []flux.StreamAppend{{
		StreamID: stream, AggregateType: "Member", Expected: flux.NoStream,
		Events: []flux.EventData{{EventID: id, EventName: event, EventVersion: version, Payload: payload, OccurredAt: at}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
}

// tamper returns payload with one character of its first encrypted value
// changed (to another valid base64url character).
func tamper(t testing.TB, payload []byte) []byte {
	t.Helper()
	b := bytes.Clone(payload)
	i := bytes.Index(b, []byte(pii.EnvelopePrefix))
	if i < 0 {
		t.Fatalf("payload %s has no encrypted value", payload)
	}
	i += len(pii.EnvelopePrefix) + 20
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return b
}
