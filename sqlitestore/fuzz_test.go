package sqlitestore

import (
	"errors"
	"testing"

	"github.com/fluxcapacitor/flux"
)

// FuzzDecodeColumns feeds arbitrary stored text columns to the row decoder:
// it must fill the record or return ErrCorruptEvent, never panic.
func FuzzDecodeColumns(f *testing.F) {
	f.Add("2026-01-02T03:04:05.123456Z", "")
	f.Add("2026-01-02T03:04:05.123456Z", `{"tenant":"acme"}`)
	f.Add("2026-13-02T03:04:05.123456Z", `{"a":1}`)
	f.Add("", "null")
	f.Add("2026-01-02 03:04:05", `["x"]`)
	f.Fuzz(func(t *testing.T, occurred, metadata string) {
		r := flux.Record{StreamID: "s", StreamVersion: 1}
		err := decodeColumns(&r, occurred, metadata)
		if err != nil {
			if !errors.Is(err, flux.ErrCorruptEvent) {
				t.Fatalf("err = %v, want ErrCorruptEvent", err)
			}
			return
		}
		if r.OccurredAt.Location().String() != "UTC" {
			t.Fatalf("time %v not in UTC", r.OccurredAt)
		}
		if back := formatTime(r.OccurredAt); back != occurred {
			t.Fatalf("time %q parsed to %v, formats back as %q: the parser accepts a second spelling", occurred, r.OccurredAt, back)
		}
	})
}
