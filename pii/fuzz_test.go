package pii_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/pii"
)

// FuzzParseEnvelope: the envelope parser never panics, recognises exactly
// the values that start with the prefix, and returns typed errors.
func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(`"fluxpii:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"`))
	f.Add([]byte(`"fluxpii:v1:"`))
	f.Add([]byte(`"fluxpii:v1:!!!"`))
	f.Add([]byte(`"plain"`))
	f.Add([]byte(`12`))
	f.Add([]byte(`"fluxpii:v1:AAAA`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		sealed, ok, err := pii.ParseEnvelope(raw)
		looks := bytes.HasPrefix(raw, []byte(`"`+pii.EnvelopePrefix)) && len(raw) >= len(pii.EnvelopePrefix)+2 && raw[len(raw)-1] == '"'
		if ok != looks {
			t.Fatalf("ParseEnvelope(%q) ok = %v, want %v", raw, ok, looks)
		}
		if err != nil && !errors.Is(err, pii.ErrBadEnvelope) {
			t.Fatalf("err = %v, want ErrBadEnvelope", err)
		}
		if ok && err == nil && len(sealed) < 28 {
			t.Fatalf("accepted %d sealed bytes", len(sealed))
		}
	})
}

// FuzzUnprotect: arbitrary stored payloads (including damaged envelopes)
// decode or fail with an error matching flux.ErrPersonalData or a JSON
// error, never panic, and never echo the input.
func FuzzUnprotect(f *testing.F) {
	store := memstore.New()
	prot, err := pii.New(pii.Config{Keys: store, Secret: []byte(secret)})
	if err != nil {
		f.Fatal(err)
	}
	good, err := prot.Protect(f.Context(), profile("fz"), mustJSON(profile("fz")), "event:e1")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"userId":"fz","email":"fluxpii:v1:zz"}`))
	f.Add([]byte(`{"userId":"fz","email":"\"fluxpii:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\""}`))
	f.Add([]byte(`{"userId":7}`))
	f.Add([]byte(`{"children":[{"name":"fluxpii:v1:AAAA"}],"userId":"fz"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out Profiled
		_, err := prot.Unprotect(t.Context(), data, &out, "event:e1")
		if err != nil && errors.Is(err, flux.ErrPersonalData) && len(data) > 12 && bytes.Contains([]byte(err.Error()), data) {
			t.Fatalf("error echoes the payload: %v", err)
		}
	})
}
