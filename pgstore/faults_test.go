package pgstore_test

import (
	"fmt"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pgstore"
	"github.com/fluxcapacitor/flux/storetest"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestFaults runs the fault suite through a TCP proxy in front of the
// test server.
func TestFaults(t *testing.T) {
	dsn := testDSN(t)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	storetest.RunFaults(t, storetest.FaultHarness{
		Target: fmt.Sprintf("%s:%d", cfg.ConnConfig.Host, cfg.ConnConfig.Port),
		Open: func(t *testing.T, addr string) flux.EventStore {
			cfg, err := pgxpool.ParseConfig(dsn)
			if err != nil {
				t.Fatal(err)
			}
			var port int
			fmt.Sscanf(addr, "127.0.0.1:%d", &port)
			cfg.ConnConfig.Host, cfg.ConnConfig.Port = "127.0.0.1", uint16(port)
			cfg.ConnConfig.TLSConfig, cfg.ConnConfig.Fallbacks = nil, nil
			pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			schema := freshSchema(t, dsn)
			t.Cleanup(pool.Close)
			s, err := pgstore.New(t.Context(), pool, &pgstore.Options{Schema: schema})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		// The simple-protocol COMMIT the store sends after its batch.
		CommitPattern: []byte("Q\x00\x00\x00\x0bCOMMIT\x00"),
	})
}
