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

// A released Payload keeps no reference to event data, also after Delete
// (which shifts fields down) and after growing past its inline buffer.
func TestPayloadResetKeepsNoData(t *testing.T) {
	for _, data := range []string{
		`{"a":"1","b":"2","c":"3"}`,
		`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10}`,
	} {
		p := new(Payload)
		if err := p.parse([]byte(data)); err != nil {
			t.Fatal(err)
		}
		p.Delete("a")
		p.SetString("z", "new")
		p.Delete("b")
		p.reset()
		for i, f := range p.buf {
			if f.Key != nil || f.Raw != nil {
				t.Fatalf("%s: buf[%d] still holds %q:%q after reset", data, i, f.Key, f.Raw)
			}
		}
		if len(p.arena) != 0 || p.fields != nil {
			t.Fatalf("%s: arena %q, fields %v after reset", data, p.arena, p.fields)
		}
	}
}
