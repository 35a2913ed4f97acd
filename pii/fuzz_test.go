package pii_test

import (
	"bytes"
	"errors"
	"fmt"
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

// Flat has only top-level personal strings: Unprotect decodes it on its
// direct path (envelopes decoded into the fields, decrypted in place).
type Flat struct {
	UserID string `json:"userId" pii:"subject"`
	Email  string `json:"email" pii:"data"`
	Name   string `json:"name" pii:"data"`
	Plan   string `json:"plan"`
}

// FuzzUnprotectDirectMatchesGeneral: for flat events, the direct path and
// the general one (taken when the target's subject is already set) give
// the same values, forgotten fields and errors for stored data — intact,
// with a byte flipped, or forgotten. Hand-written payloads (raw) only must
// not panic: the paths may word their errors differently (a JSON error
// against a personal-data one), and the direct path also treats an
// escaped envelope prefix as an envelope.
func FuzzUnprotectDirectMatchesGeneral(f *testing.F) {
	f.Add("ada@example.com", "Ada \"the\" Countess", "u1", uint16(0), false, `{"userId":"u1","email":"plain","plan":"x"}`)
	f.Add("", "名前", "u2", uint16(3), false, ``)
	f.Add("a\x00b", "x", "u3", uint16(40), true, `{"userId":"u3","email":"fluxpii:v1:AAAA"}`)
	f.Add("e", "n", "", uint16(0), false, `{"email":"fluxpii:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`)
	f.Fuzz(func(t *testing.T, email, name, subject string, flip uint16, forget bool, raw string) {
		ctx := t.Context()
		store := memstore.New()
		prot, err := pii.New(pii.Config{Keys: store, Secret: []byte(secret), Replacement: "[gone]"})
		if err != nil {
			t.Fatal(err)
		}
		data := []byte(raw)
		if subject != "" {
			ev := Flat{UserID: subject, Email: email, Name: name, Plan: "gold"}
			if data, err = prot.Protect(ctx, ev, mustJSON(ev), "event:e1"); err != nil {
				return // e.g. invalid UTF-8 is refused on the way in
			}
			if flip > 0 {
				data = bytes.Clone(data)
				data[int(flip)%len(data)] ^= 0x01
			}
			if forget {
				if _, err := prot.Forget(ctx, subject, pii.ForgetOptions{By: "fuzz"}); err != nil {
					t.Fatal(err)
				}
			}
		}
		var direct Flat
		fd, errD := prot.Unprotect(ctx, data, &direct, "event:e1")
		general := Flat{UserID: "preset"} // a set subject takes the general path
		fg, errG := prot.Unprotect(ctx, data, &general, "event:e1")
		if subject == "" {
			return
		}
		if (errD == nil) != (errG == nil) {
			t.Fatalf("direct err %v, general err %v (payload %q)", errD, errG, data)
		}
		if errD != nil {
			// A flipped byte may break the JSON itself: the paths then
			// fail at different stages. Personal-data failures must agree.
			if !errors.Is(errD, flux.ErrPersonalData) || !errors.Is(errG, flux.ErrPersonalData) {
				return
			}
			for _, target := range []error{pii.ErrTampered, pii.ErrBadEnvelope, pii.ErrNoSubject, pii.ErrWrongSecret} {
				if errors.Is(errD, target) != errors.Is(errG, target) {
					t.Fatalf("direct err %v, general err %v differ on %v", errD, errG, target)
				}
			}
			return
		}
		if direct.Email != general.Email || direct.Name != general.Name || direct.Plan != general.Plan || fmt.Sprint(fd) != fmt.Sprint(fg) {
			t.Fatalf("direct %+v %v, general %+v %v (payload %q)", direct, fd, general, fg, data)
		}
	})
}
