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
