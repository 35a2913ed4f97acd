package mysqlstore_test

import (
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/mysqlstore"
	"github.com/fluxcapacitor/flux/storetest"
	"github.com/go-sql-driver/mysql"
)

// TestFaults runs the fault suite through a TCP proxy in front of the
// test server.
func TestFaults(t *testing.T) {
	serverCfg, err := mysql.ParseDSN(mysqlstore.ServerDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	if serverCfg.Net != "tcp" {
		t.Skipf("the test server is reached over %s; the fault proxy needs TCP", serverCfg.Net)
	}
	storetest.RunFaults(t, storetest.FaultHarness{
		Target: serverCfg.Addr,
		Open: func(t *testing.T, addr string) flux.EventStore {
			cfg, err := mysql.ParseDSN(mysqlstore.NewTestDatabase(t))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Addr = addr
			s, err := mysqlstore.Open(t.Context(), cfg.FormatDSN(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		// COM_QUERY "COMMIT": a 7-byte payload, sequence 0, command 3.
		CommitPattern: []byte("\x07\x00\x00\x00\x03COMMIT"),
	})
}
