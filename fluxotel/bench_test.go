package fluxotel_test

import (
	"context"
	"strconv"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/fluxotel"
	"github.com/fluxcapacitor/flux/memstore"
)

// Tally is the benchmarks' aggregate: no personal data, no snapshots, so
// that the observer's share of a save and a load shows.
type Tally struct {
	flux.Root
	N int
}

type Counted struct{ N int }

func (t *Tally) Apply(e any) {
	if c, ok := e.(Counted); ok {
		t.N += c.N
	}
}

// discard is a span exporter that drops every span.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkSaveLoad measures one save (of one event, to a new stream) and
// one load of it on memstore: "baseline" without an observer, "fluxotel"
// with spans sampled and batched to an exporter that drops them, and
// metrics aggregated by a manual reader. Compare ns/op and allocs/op.
func BenchmarkSaveLoad(b *testing.B) {
	run := func(b *testing.B, obs flux.Observer) {
		reg, err := flux.NewRegistry(flux.AggregateType("Tally", func() *Tally { return new(Tally) }, flux.EventType[Counted]("Counted", 1)))
		if err != nil {
			b.Fatal(err)
		}
		repo, err := flux.NewRepository(flux.Config{Store: memstore.New(), Registry: reg, Observer: obs})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			t := new(Tally)
			t.SetID("t" + strconv.Itoa(i))
			flux.Raise(t, Counted{N: 1})
			if err := repo.Save(ctx, t); err != nil {
				b.Fatal(err)
			}
			if _, err := flux.Load[*Tally](ctx, repo, t.ID()); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("baseline", func(b *testing.B) { run(b, nil) })
	b.Run("fluxotel", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(discard{}))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		})
		obs, err := fluxotel.New(fluxotel.Config{TracerProvider: tp, MeterProvider: mp})
		if err != nil {
			b.Fatal(err)
		}
		run(b, obs)
	})
}
