package minimalstore_test

import (
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/examples/minimalstore"
	"github.com/fluxcapacitor/flux/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) flux.EventStore {
			s := minimalstore.New()
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			return s
		},
		Short: testing.Short(),
	})
}
