package memstore_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/pii/piitest"
)

func TestNoPersonalDataInClear(t *testing.T) {
	piitest.Run(t, piitest.Harness{
		New: func(t *testing.T) flux.EventStore { return memstore.New() },
		Dump: func(t *testing.T, es flux.EventStore) []byte {
			s := es.(*memstore.Store)
			ctx := context.Background()
			var b bytes.Buffer
			for r, err := range s.ReadAll(ctx, flux.ReadAllOptions{}) {
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "%+v %s\n", r, r.Payload)
			}
			for info, err := range s.ListSnapshots(ctx, "") {
				if err != nil {
					t.Fatal(err)
				}
				sn, _, err := s.LoadSnapshot(ctx, info.StreamID, flux.SnapshotQuery{SchemaVersion: info.SchemaVersion, MaxVersion: info.Version})
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "%+v %s\n", sn, sn.Data)
			}
			for _, subj := range []string{"alice-1", "bob-2", "carol-3", "keeper-9"} {
				rec, _, err := s.LookupIdempotency(ctx, "register-"+subj)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "%+v %s\n", rec, rec.Result)
			}
			if _, err := s.RewrapKeys(ctx, func(k pii.StoredKey) (pii.StoredKey, error) {
				fmt.Fprintf(&b, "%+v\n", k)
				return k, nil
			}); err != nil {
				t.Fatal(err)
			}
			return b.Bytes()
		},
	})
}
