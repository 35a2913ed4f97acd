package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
)

// testForgetValidation checks that every backend refuses the same invalid
// tombstones, before any I/O, with an error matching flux.ErrPersonalData,
// and stores nothing for them. (Before issue 16 each backend validated the
// subject its own way: memstore and sqlitestore accepted an empty subject
// or a NUL, pgstore refused NUL only, mysqlstore checked UTF-8 and length.)
func testForgetValidation(t *testing.T, h Harness) {
	s := h.New(t)
	ks := as[pii.KeyStore](t, s, "pii.KeyStore")
	ctx := context.Background()
	bad := map[string]pii.Forgetting{
		"empty subject":     {Subject: "", At: base},
		"NUL in subject":    {Subject: "bob\x00", At: base},
		"invalid UTF-8":     {Subject: "bob\xff", At: base},
		"NUL in by":         {Subject: "carol", At: base, By: "admin\x00"},
		"NUL in reason":     {Subject: "dave", At: base, Reason: "gdpr\x00"},
		"invalid UTF-8 by":  {Subject: "erin", At: base, By: "\xfe"},
		"invalid UTF-8 why": {Subject: "frank", At: base, Reason: "\xfe"},
	}
	for name, f := range bad {
		err := ks.ForgetSubject(ctx, f)
		if !errors.Is(err, flux.ErrPersonalData) {
			t.Errorf("%s: ForgetSubject(%q) = %v, want an error matching flux.ErrPersonalData", name, f.Subject, err)
			continue
		}
		if _, ok, err := ks.Forgotten(ctx, f.Subject); err == nil && ok {
			t.Errorf("%s: refused ForgetSubject(%q) left a tombstone", name, f.Subject)
		}
	}
	// A valid tombstone is still recorded.
	if err := ks.ForgetSubject(ctx, pii.Forgetting{Subject: "grace", At: base, By: "ops", Reason: "request"}); err != nil {
		t.Fatalf("valid ForgetSubject: %v", err)
	}
	if f, ok, err := ks.Forgotten(ctx, "grace"); err != nil || !ok || f.By != "ops" || f.Reason != "request" {
		t.Fatalf("Forgotten(grace) = %+v, %v, %v", f, ok, err)
	}
}
