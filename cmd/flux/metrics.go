package main

import (
	"errors"
	"net/http"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/projection"
)

// newMetrics returns the observer and handler behind --metrics-addr. It is
// replaced when the fluxotel module is wired in.
var newMetrics = func() (flux.Observer, http.Handler, error) {
	return nil, nil, errors.New("this build has no metrics support")
}

// observeRunner registers a runner's lag gauges with the metrics observer.
func (m *Main) observeRunner(r *projection.Runner) error {
	if o, ok := m.observer.(interface {
		ObserveRunner(*projection.Runner) error
	}); ok {
		return o.ObserveRunner(r)
	}
	return nil
}
