package fluxotel_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/fluxotel"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/pii"
)

// The domain of the tests: members with personal data, points credited
// to them (an event whose shape changed: v1 said "pts").
type (
	UpdateProfile struct{ ID, Email, Name string }
	Credit        struct {
		ID     string
		Points int
	}
	Points struct{ ID string }

	ProfileUpdated struct {
		MemberID string `json:"memberId" pii:"subject"`
		Email    string `json:"email" pii:"data"`
		Name     string `json:"name" pii:"data"`
	}
	Credited struct {
		Points int `json:"points"`
	}
)

// Member keeps its personal data in its state and in its snapshots.
type Member struct {
	flux.Root
	Email  string `json:"email" pii:"data"`
	Name   string `json:"name" pii:"data"`
	Points int    `json:"points"`
}

func (m *Member) PersonalDataSubject() string { return m.ID() }

func (m *Member) Apply(e any) {
	switch e := e.(type) {
	case ProfileUpdated:
		m.Email, m.Name = e.Email, e.Name
	case Credited:
		m.Points += e.Points
	}
}

func (m *Member) SnapshotState() any                           { return m }
func (m *Member) RestoreSnapshot(decode func(any) error) error { return decode(m) }

const secret = "0123456789abcdef0123456789abcdef"

// t0 is the scripted scenario's epoch.
var t0 = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

// stepClock returns t0 plus one more millisecond at every call.
func stepClock() func() time.Time {
	var n atomic.Int64
	return func() time.Time { return t0.Add(time.Duration(n.Add(1)) * time.Millisecond) }
}

func registry(t testing.TB) *flux.Registry {
	t.Helper()
	reg, err := flux.NewRegistry(flux.AggregateType("Member", func() *Member { return new(Member) },
		flux.EventType[ProfileUpdated]("ProfileUpdated", 1),
		flux.EventType[Credited]("Credited", 2, flux.Upcast(1, func(p *flux.Payload) error {
			p.Rename("pts", "points")
			return nil
		})),
		flux.Snapshots(flux.SnapshotPolicy{Every: 2}),
	))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// telemetry is an observer over in-memory exporters.
type telemetry struct {
	obs    *fluxotel.Observer
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
}

func newTelemetry(t testing.TB, cfg fluxotel.Config) *telemetry {
	t.Helper()
	tel := &telemetry{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	cfg.TracerProvider, cfg.MeterProvider = tp, mp
	obs, err := fluxotel.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tel.obs = obs
	return tel
}

// env is a repository over memstore with personal data protection.
type env struct {
	store *memstore.Store
	repo  *flux.Repository
	prot  *pii.Protector
}

func newEnv(t testing.TB, obs flux.Observer) *env {
	t.Helper()
	store := memstore.New()
	prot, err := pii.New(pii.Config{Keys: store, Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{
		Store: store, Registry: registry(t), Protector: prot, Observer: obs,
		Clock: func() time.Time { return t0.Add(time.Second) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: store, repo: repo, prot: prot}
}

// collect reads the metrics as sorted lines:
//
//	name[unit]{k=v,...} value                   (sums and gauges)
//	name[unit]{k=v,...} count=N sum=S           (histograms)
func (tel *telemetry) collect(t testing.TB) []string {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != fluxotel.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, fluxotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			head := m.Name + "[" + m.Unit + "]"
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if !d.IsMonotonic {
					t.Errorf("%s is not monotonic", m.Name)
				}
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("%s%s %d", head, attrs(p.Attributes.ToSlice()), p.Value))
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("%s%s %d", head, attrs(p.Attributes.ToSlice()), p.Value))
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("%s%s %g", head, attrs(p.Attributes.ToSlice()), p.Value))
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("%s%s count=%d sum=%g", head, attrs(p.Attributes.ToSlice()), p.Count, math.Round(p.Sum*1e6)/1e6))
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("%s%s count=%d sum=%d", head, attrs(p.Attributes.ToSlice()), p.Count, p.Sum))
				}
			default:
				t.Errorf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	sort.Strings(lines)
	return lines
}

// attrs renders attributes sorted by key: {k=v,k=v}.
func attrs(kvs []attribute.KeyValue) string {
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		parts[i] = string(kv.Key) + "=" + kv.Value.Emit()
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// render describes the ended spans, in the order they ended, one a line:
//
//	#i name trace=N parent=#j kind dur {attrs} [status] events=[...] links=[#k]
//
// Traces are numbered by first appearance; parents and links name the
// index of the span they point to ("?" for one not recorded).
func render(spans []sdktrace.ReadOnlySpan) []string {
	index := map[trace.SpanID]int{}
	traces := map[trace.TraceID]int{}
	for i, s := range spans {
		index[s.SpanContext().SpanID()] = i
		if _, ok := traces[s.SpanContext().TraceID()]; !ok {
			traces[s.SpanContext().TraceID()] = len(traces) + 1
		}
	}
	ref := func(sc trace.SpanContext) string {
		i, ok := index[sc.SpanID()]
		if !ok || spans[i].SpanContext().TraceID() != sc.TraceID() {
			return "?"
		}
		return fmt.Sprintf("#%d", i)
	}
	var lines []string
	for i, s := range spans {
		parent := "-"
		if s.Parent().IsValid() {
			parent = ref(s.Parent())
		}
		line := fmt.Sprintf("#%d %s trace=%d parent=%s %s %s %s", i, s.Name(), traces[s.SpanContext().TraceID()], parent,
			s.SpanKind(), s.EndTime().Sub(s.StartTime()), attrs(s.Attributes()))
		if st := s.Status(); st.Code != 0 {
			line += fmt.Sprintf(" %s:%q", st.Code, st.Description)
		}
		if evs := s.Events(); len(evs) > 0 {
			var names []string
			for _, e := range evs {
				names = append(names, e.Name+attrs(e.Attributes))
			}
			line += " events=[" + strings.Join(names, " ") + "]"
		}
		if ls := s.Links(); len(ls) > 0 {
			var refs []string
			for _, l := range ls {
				refs = append(refs, ref(l.SpanContext)+attrs(l.Attributes))
			}
			line += " links=[" + strings.Join(refs, " ") + "]"
		}
		lines = append(lines, line)
	}
	return lines
}

// diff fails t with both lists when they differ.
func diff(t testing.TB, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got:\n\t%s\nwant:\n\t%s", what, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}
