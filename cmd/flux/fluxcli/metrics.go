package fluxcli

import (
	"net/http"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/fluxotel"
	"github.com/fluxcapacitor/flux/projection"
)

// newMetrics returns the observer and handler behind --metrics-addr:
// OpenTelemetry metrics exported for Prometheus.
var newMetrics = func() (flux.Observer, http.Handler, error) {
	obs, handler, err := fluxotel.NewPrometheus(fluxotel.Config{})
	if err != nil {
		return nil, nil, err
	}
	return obs, handler, nil
}

// observeRunner registers a runner's lag gauges with the metrics observer.
func (m *Main) observeRunner(r *projection.Runner) error {
	if o, ok := m.observer.(*fluxotel.Observer); ok {
		return o.ObserveRunner(r)
	}
	return nil
}
