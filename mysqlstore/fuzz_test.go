package mysqlstore

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
)

// FuzzRecordScanner feeds arbitrary column bytes to the row decoder: it
// must fill the record or return ErrCorruptEvent, never panic, and read
// the integer columns exactly as strconv does.
func FuzzRecordScanner(f *testing.F) {
	f.Add("1", "2", "1", `{"tenant":"acme"}`)
	f.Add("9223372036854775807", "-1", "3", "")
	f.Add("9999999999999999999", "1", "1", "")
	f.Add("-", "x", "", "null")
	f.Add("12", "7", "2", `{"a":1}`)
	f.Fuzz(func(t *testing.T, id, version, eventVersion, metadata string) {
		var sc recordScanner
		sc.dest()
		for i := range sc.raw {
			sc.raw[i] = []byte("x")
		}
		sc.raw[colID], sc.raw[colVersion], sc.raw[colEventVersion] = []byte(id), []byte(version), []byte(eventVersion)
		sc.raw[colMetadata] = []byte(metadata)
		r, err := sc.record()
		if err != nil {
			if !errors.Is(err, flux.ErrCorruptEvent) {
				t.Fatalf("err = %v, want ErrCorruptEvent", err)
			}
			return
		}
		for _, c := range []struct {
			text string
			got  int64
		}{{id, r.Position}, {version, r.StreamVersion}, {eventVersion, int64(r.EventVersion)}} {
			want, err := strconv.ParseInt(c.text, 10, 64)
			if err != nil || want != c.got {
				t.Fatalf("column %q read as %d; strconv says %d, %v", c.text, c.got, want, err)
			}
		}
	})
}

// FuzzUTCTime: stored times parse in UTC, or fail with an error, and the
// canonical spelling of what was parsed reads back as the same time.
func FuzzUTCTime(f *testing.F) {
	f.Add("2026-01-02 03:04:05.123456")
	f.Add("2026-01-02 03:04:05")
	f.Add("2026-13-02 03:04:05.123456")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		var got time.Time
		if err := (utcTime{&got}).Scan([]byte(s)); err != nil {
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("%q parsed to %v, not UTC", s, got)
		}
		var again time.Time
		if err := (utcTime{&again}).Scan(got.Format(timeLayout)); err != nil || !again.Equal(got.Truncate(time.Microsecond)) {
			t.Fatalf("%q parsed to %v; its canonical form reads back as %v, %v", s, got, again, err)
		}
	})
}
