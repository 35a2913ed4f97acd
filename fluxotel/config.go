package fluxotel

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and meter.
const ScopeName = "github.com/fluxcapacitor/flux/fluxotel"

// DefaultMaxLinks is the default of Config.MaxLinks: the OpenTelemetry
// SDK's default limit of links per span.
const DefaultMaxLinks = 128

// ErrInvalidConfig is matched by the errors New and NewPrometheus return
// for a Config they cannot use.
var ErrInvalidConfig = errors.New("fluxotel: invalid config")

// Config configures an Observer. The zero value is usable: every field
// documents its default.
type Config struct {
	// TracerProvider creates the spans. Default: the global provider
	// (otel.GetTracerProvider), read when New runs; a global set later is
	// still used, as the global provider delegates to it.
	TracerProvider trace.TracerProvider
	// MeterProvider creates the instruments. Default: the global provider
	// (otel.GetMeterProvider), with the same late binding.
	MeterProvider metric.MeterProvider
	// Propagator writes the current span context into the metadata of the
	// events a save stores (TraceMetadata), and reads it back to link
	// projection batches to the operations that wrote their events.
	// Default: W3C trace context (propagation.TraceContext: traceparent and
	// tracestate). The default is deliberately not the global propagator:
	// event metadata is stored in clear and forever, and a propagator that
	// carries baggage would store the baggage with every event. Configure
	// one only if everything it writes may be stored that way.
	Propagator propagation.TextMapPropagator
	// AttributeFilter, if set, is asked about every attribute this package
	// puts on a span or a measurement; attributes it returns false for are
	// dropped. Use it when an attribute is too costly or too revealing
	// where you send it: if your stream IDs are e-mail addresses, drop
	// StreamIDKey (see ExceptKeys). Default: keep every attribute.
	AttributeFilter attribute.Filter
	// RecordErrorMessages records err.Error() on spans (status description
	// and the exception event). Default false: an error is recorded by its
	// Go type and the flux, pii and context sentinels it matches (for
	// example "flux: concurrency conflict"), because the message of an
	// application's error (a command handler's, a projection's) may quote
	// personal data. FluxCapacitor's own messages never quote values.
	RecordErrorMessages bool
	// MaxLinks bounds the links of one flux.projection.batch span: one per
	// distinct span context found in the batch's event metadata, in batch
	// order. Default (0): DefaultMaxLinks. Negative is invalid.
	MaxLinks int
	// Clock times the operations for the duration histograms; when set,
	// it also stamps the spans and their events, so that both agree (tests
	// use it for exact figures). Default: time.Now, and the SDK stamps the
	// spans itself.
	Clock func() time.Time
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.MeterProvider == nil {
		c.MeterProvider = otel.GetMeterProvider()
	}
	if c.Propagator == nil {
		c.Propagator = propagation.TraceContext{}
	}
	if c.MaxLinks == 0 {
		c.MaxLinks = DefaultMaxLinks
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

// validate reports every problem of c (after withDefaults), joined.
func (c Config) validate() error {
	var errs []error
	if c.MaxLinks < 0 {
		errs = append(errs, fmt.Errorf("%w: MaxLinks is %d; use a positive number, or 0 for the default (%d)", ErrInvalidConfig, c.MaxLinks, DefaultMaxLinks))
	}
	return errors.Join(errs...)
}

// ExceptKeys returns an attribute filter that drops the given keys and
// keeps every other attribute:
//
//	fluxotel.Config{AttributeFilter: fluxotel.ExceptKeys(fluxotel.StreamIDKey)}
func ExceptKeys(keys ...attribute.Key) attribute.Filter {
	drop := make(map[attribute.Key]struct{}, len(keys))
	for _, k := range keys {
		drop[k] = struct{}{}
	}
	return func(kv attribute.KeyValue) bool {
		_, ok := drop[kv.Key]
		return !ok
	}
}
