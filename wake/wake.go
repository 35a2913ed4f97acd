// Package wake broadcasts in-process "an append committed" signals to
// following subscriptions. A backend implements projection.Waker by
// returning Broadcaster.Subscribe and calling Signal after each commit
// (memstore, sqlitestore and mysqlstore do; pgstore also signals on
// LISTEN/NOTIFY). Signals are coalesced: a subscriber that has not consumed
// the last one does not queue another.
package wake

import (
	"context"
	"sync"
)

// Broadcaster is safe for concurrent use. The zero value is ready.
type Broadcaster struct {
	mu   sync.Mutex
	subs map[chan struct{}]struct{}
}

// Subscribe returns a channel that receives a value after Signal, until ctx
// is done.
func (b *Broadcaster) Subscribe(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	b.mu.Lock()
	if b.subs == nil {
		b.subs = make(map[chan struct{}]struct{})
	}
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
	})
	return ch
}

// Signal wakes every subscriber without blocking.
func (b *Broadcaster) Signal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
