package fluxotel

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/metric"

	"github.com/fluxcapacitor/flux/projection"
)

// ObserveRunner reports the status of every projection of r as gauges,
// read from r.Status whenever the metrics are collected:
// flux.projection.lag.events, flux.projection.lag (seconds) and
// flux.projection.failures, each by flux.projection. The NATS relay runs
// as a projection in a runner, so its lag is the lag of the projection
// named after the relay: observe the relay's runner too.
//
// Call it once per runner; the gauges report for as long as the meter
// provider lives. A failing r.Status (the store unreachable) is returned
// to the meter provider, which reports it through the OpenTelemetry error
// handler and skips the observation. ObserveRunner returns an error when r
// is nil or the meter refuses the callback.
func (o *Observer) ObserveRunner(r *projection.Runner) error {
	if r == nil {
		return errors.New("fluxotel: ObserveRunner: the runner is nil")
	}
	_, err := o.meter.RegisterCallback(func(ctx context.Context, obs metric.Observer) error {
		all, err := r.Status(ctx)
		if err != nil {
			return fmt.Errorf("fluxotel: projection status: %w", err)
		}
		for _, s := range all {
			set := o.set(ProjectionKey.String(s.Name)).obs
			obs.ObserveInt64(o.lagEvents, s.LagEvents, set...)
			obs.ObserveFloat64(o.lagSeconds, s.Lag.Seconds(), set...)
			obs.ObserveInt64(o.projectionFailures, int64(s.Failures), set...)
		}
		return nil
	}, o.lagEvents, o.lagSeconds, o.projectionFailures)
	if err != nil {
		return fmt.Errorf("fluxotel: ObserveRunner: %w", err)
	}
	return nil
}
