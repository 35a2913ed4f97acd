package fluxotel_test

import (
	"context"
	"fmt"
	"log"
	"net/http"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/fluxotel"
	"github.com/fluxcapacitor/flux/memstore"
)

type (
	Account struct {
		flux.Root
		Balance int
	}
	Deposited struct{ Amount int }
	Deposit   struct {
		Account string
		Amount  int
	}
)

func (a *Account) Apply(e any) {
	if d, ok := e.(Deposited); ok {
		a.Balance += d.Amount
	}
}

// New wires OpenTelemetry into a repository through flux.Config.Observer:
// the command's span holds its save, which holds the store append.
func ExampleNew() {
	// In an application: the SDK providers with exporters (OTLP, ...), or
	// none at all to use the globals. Here spans are kept in memory.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	obs, err := fluxotel.New(fluxotel.Config{TracerProvider: tp, MeterProvider: sdkmetric.NewMeterProvider()})
	if err != nil {
		log.Fatal(err)
	}

	reg, err := flux.NewRegistry(flux.AggregateType("Account", func() *Account { return new(Account) },
		flux.EventType[Deposited]("Deposited", 1)))
	if err != nil {
		log.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: memstore.New(), Registry: reg, Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	bus, err := flux.NewCommandBus(flux.CommandBusConfig{Repository: repo})
	if err != nil {
		log.Fatal(err)
	}
	_ = flux.HandleCommand(bus, func(ctx context.Context, c Deposit) error {
		a := new(Account)
		a.SetID(c.Account)
		flux.Raise(a, Deposited{Amount: c.Amount})
		return flux.Track(ctx, a)
	})
	ctx := context.Background()
	if err := bus.Dispatch(ctx, Deposit{Account: "acc-1", Amount: 10}); err != nil {
		log.Fatal(err)
	}
	if _, err := flux.Load[*Account](ctx, repo, "acc-1"); err != nil {
		log.Fatal(err)
	}

	// Print the span tree.
	ended := spans.Ended()
	var print func(parent string, depth int)
	print = func(parent string, depth int) {
		for _, s := range ended {
			p := ""
			if s.Parent().IsValid() {
				p = s.Parent().SpanID().String()
			}
			if p == parent {
				fmt.Printf("%*s%s\n", 2*depth, "", s.Name())
				print(s.SpanContext().SpanID().String(), depth+1)
			}
		}
	}
	print("", 0)
	// Output:
	// flux.command
	//   flux.save
	//     flux.append
	// flux.load
}

// NewPrometheus serves the metrics for Prometheus to scrape, as the flux
// CLI does with --metrics-addr.
func ExampleNewPrometheus() {
	obs, metrics, err := fluxotel.NewPrometheus(fluxotel.Config{})
	if err != nil {
		log.Fatal(err)
	}
	_ = obs // set in flux.Config.Observer; pass runners to obs.ObserveRunner
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	log.Fatal(http.ListenAndServe("localhost:9464", mux))
}
