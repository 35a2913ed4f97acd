package storetest

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"
)

// checkGoroutines fails t, after its subtests and cleanups (every store
// closed), when goroutines started during the suite are still running: a
// store whose Close leaves a goroutine behind, a subscription or runner
// that does not stop with its context. Goroutines of t's own test binary
// that started before the suite are not counted. A goroutine may take a
// moment to return after Close, so the check looks again for up to 10s
// before it reports; a suite that passes waits for nothing.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := map[string]bool{}
	for _, g := range goroutines() {
		before[g.id] = true
	}
	t.Cleanup(func() {
		if t.Failed() {
			return // the failure is the news; leaks after it are noise
		}
		var left []goroutine
		for wait := time.Millisecond; ; wait *= 2 {
			left = left[:0]
			for _, g := range goroutines() {
				if !before[g.id] && !g.self {
					left = append(left, g)
				}
			}
			if len(left) == 0 || wait > 5*time.Second {
				break
			}
			time.Sleep(wait)
		}
		if len(left) > 0 {
			var b strings.Builder
			for _, g := range left {
				b.WriteString("\n\n" + g.stack)
			}
			t.Errorf("storetest: %d goroutines started by the suite still run after every store was closed:%s", len(left), b.String())
		}
	})
}

type goroutine struct {
	id    string // "goroutine 42"
	self  bool   // the goroutine asking
	stack string
}

// goroutines returns every goroutine's stack, split by goroutine.
func goroutines() []goroutine {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var gs []goroutine
	for i, block := range bytes.Split(buf, []byte("\n\n")) {
		s := string(block)
		head, _, _ := strings.Cut(s, " [")
		gs = append(gs, goroutine{id: head, self: i == 0, stack: s})
	}
	return gs
}
