package sqlitestore_test

import (
	"path/filepath"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/sqlitestore"
	"github.com/fluxcapacitor/flux/storetest"
)

func openTemp(t testing.TB, opts *sqlitestore.Options) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "flux.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) flux.EventStore { return openTemp(t, nil) },
	})
}
