package memstore_test

import (
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) flux.EventStore {
			s := memstore.NewWithOptions(memstore.Options{MaxEventSize: 2 << 20})
			t.Cleanup(func() { s.Close() })
			return s
		},
		MaxEventSize: 2 << 20,
	})
}
