package natsrelay_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/fluxcapacitor/flux/natsrelay"
)

// FuzzSubject checks that any aggregate type and event name map to exactly
// two valid subject tokens after the prefix, and that clean names are kept.
func FuzzSubject(f *testing.F) {
	for _, s := range []string{"User", "user.signed_up", "a*b>c", "Budget Envelope", "\x00\xff", "日本", "", "."} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, agg, event string) {
		subject := natsrelay.Subject("flux", agg, event)
		if !utf8.ValidString(subject) {
			t.Fatalf("Subject(%q, %q) = %q is not valid UTF-8", agg, event, subject)
		}
		tokens := strings.Split(subject, ".")
		if len(tokens) != 3 || tokens[0] != "flux" {
			t.Fatalf("Subject(%q, %q) = %q, want flux.<token>.<token>", agg, event, subject)
		}
		for _, tok := range tokens[1:] {
			if tok == "" || strings.ContainsAny(tok, "*>") || strings.IndexFunc(tok, func(r rune) bool {
				return unicode.IsSpace(r) || unicode.IsControl(r)
			}) >= 0 {
				t.Fatalf("Subject(%q, %q) = %q holds an invalid token %q", agg, event, subject, tok)
			}
		}
		if utf8.ValidString(agg) && agg != "" && !strings.ContainsFunc(agg, func(r rune) bool {
			return r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r)
		}) && tokens[1] != agg {
			t.Fatalf("clean name %q mapped to %q", agg, tokens[1])
		}
	})
}

// FuzzMetadataHeader checks that every metadata key gives a header name
// NATS accepts, and that distinct keys give distinct names.
func FuzzMetadataHeader(f *testing.F) {
	for _, s := range []string{"traceparent", "a:b", "100%", "é", "", " "} {
		f.Add(s, s+"x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ha, hb := natsrelay.MetadataHeader(a), natsrelay.MetadataHeader(b)
		for i := 0; i < len(ha); i++ {
			if c := ha[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
				t.Fatalf("MetadataHeader(%q) = %q holds %q", a, ha, c)
			}
		}
		if a != b && ha == hb {
			t.Fatalf("keys %q and %q share header %q", a, b, ha)
		}
	})
}
