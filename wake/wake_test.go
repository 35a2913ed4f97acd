package wake

import (
	"context"
	"testing"
	"time"
)

func TestSignalReachesSubscribersAndCoalesces(t *testing.T) {
	var b Broadcaster
	ctx, cancel := context.WithCancel(context.Background())
	a, c := b.Subscribe(ctx), b.Subscribe(ctx)
	b.Signal()
	b.Signal() // coalesced
	for _, ch := range []<-chan struct{}{a, c} {
		select {
		case <-ch:
		case <-time.After(time.Second):
			t.Fatal("no signal")
		}
		select {
		case <-ch:
			t.Fatal("signals were not coalesced")
		default:
		}
	}
	cancel()
	deadline := time.Now().Add(time.Second)
	for {
		b.mu.Lock()
		n := len(b.subs)
		b.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers left after their context ended", n)
		}
		time.Sleep(time.Millisecond)
	}
}
