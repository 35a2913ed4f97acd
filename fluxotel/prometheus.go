package fluxotel

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// NewPrometheus returns an Observer whose metrics are served, in the
// Prometheus text format, by the returned handler (the `flux` CLI mounts
// it at /metrics of --metrics-addr). The metrics live in a registry of
// their own, beside the Go runtime and process collectors, never in
// prometheus.DefaultRegisterer; names follow Prometheus conventions
// (flux.append.duration becomes flux_append_duration_seconds, flux.loads
// becomes flux_loads_total, attribute flux.projection the label
// flux_projection).
//
// Spans still go to cfg.TracerProvider. cfg.MeterProvider must be nil:
// NewPrometheus makes its own; a non-nil one is an error matching
// ErrInvalidConfig.
func NewPrometheus(cfg Config) (*Observer, http.Handler, error) {
	if cfg.MeterProvider != nil {
		return nil, nil, fmt.Errorf("%w: NewPrometheus makes its own MeterProvider; leave Config.MeterProvider nil", ErrInvalidConfig)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, fmt.Errorf("fluxotel: register the Go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, fmt.Errorf("fluxotel: register the process collector: %w", err)
	}
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("fluxotel: prometheus exporter: %w", err)
	}
	cfg.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	o, err := New(cfg)
	if err != nil {
		return nil, nil, err
	}
	return o, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), nil
}
