package flux

import "testing"

// FuzzHasControl checks the eight-bytes-at-a-time scan against the plain
// byte loop.
func FuzzHasControl(f *testing.F) {
	for _, s := range []string{"", "plain ascii text, long enough", "tab\there", "\x1f", "\x20\x7f\x80\xff\x00", "0123456\x01"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want := false
		for _, c := range b {
			if c < 0x20 {
				want = true
			}
		}
		if got := hasControl(b); got != want {
			t.Fatalf("hasControl(%q) = %v, want %v", b, got, want)
		}
	})
}

// FuzzSkipString checks the word-at-a-time string scan against a plain
// byte loop: same end, same escaped flag, same acceptance.
func FuzzSkipString(f *testing.F) {
	for _, s := range []string{`"plain"`, `"with \"escape\" inside, long enough to span words"`, "\"ctl\x01\"", `"unterminated`, `"\\\\"`, `""`, `"é and ascii 12345678"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := scanner{data: b}
		esc, err := s.skipString()
		// The reference.
		pos, wantEsc, ok := 0, false, false
		if len(b) > 0 && b[0] == '"' {
			for pos = 1; pos < len(b); {
				c := b[pos]
				if c == '"' {
					pos++
					ok = true
					break
				}
				if c < 0x20 {
					break
				}
				if c == '\\' {
					wantEsc = true
					pos += 2
					continue
				}
				pos++
			}
		}
		if (err == nil) != ok || (ok && (s.pos != pos || esc != wantEsc)) {
			t.Fatalf("skipString(%q) = pos %d, escaped %v, err %v; want pos %d, escaped %v, ok %v", b, s.pos, esc, err, pos, wantEsc, ok)
		}
	})
}
