package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/txhook"
)

// testUncommittedInvisible: while an append is written but not committed,
// no read shows it — ReadAll, ReadStream, Head — and after it rolls back
// the next append's events are the ones a reader gets at those positions.
// A backend whose sessions run at READ UNCOMMITTED (MySQL/MariaDB with
// transaction_isolation in the DSN) fails here: a subscription would move
// past a phantom and never deliver the real event at that position.
func testUncommittedInvisible(t *testing.T, h Harness) {
	s := h.New(t)
	first := mustAppend(t, s, stream("committed", flux.NoStream, event("E", `{}`, base)))
	checkpoint := first.Positions[0]

	held, release := make(chan struct{}), make(chan struct{})
	aborted := errors.New("storetest: rolled back on purpose")
	done := make(chan error, 1)
	go func() {
		ctx := txhook.WithBeforeCommit(context.Background(), func(context.Context) error {
			close(held)
			<-release
			return aborted
		})
		_, err := s.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{stream("phantom", flux.NoStream, events(2, "Phantom")...)}})
		done <- err
	}()
	<-held
	check := func(when string) {
		t.Helper()
		for _, r := range readAll(t, s, flux.ReadAllOptions{After: 0}) {
			if r.StreamID == "phantom" {
				t.Errorf("%s: ReadAll returned %s at position %d from an append that has not committed", when, r.EventName, r.Position)
			}
		}
		if got := readStream(t, s, "phantom", flux.ReadStreamOptions{}); len(got) != 0 {
			t.Errorf("%s: ReadStream returned %d events of an append that has not committed", when, len(got))
		}
		if in, ok := s.(flux.Inspector); ok {
			head, err := in.Head(context.Background())
			if err != nil {
				t.Fatalf("%s: head: %v", when, err)
			}
			if head != checkpoint {
				t.Errorf("%s: Head is %d, want %d: it counts an append that has not committed", when, head, checkpoint)
			}
		}
	}
	check("while an append is held before its commit")
	close(release)
	if err := <-done; !errors.Is(err, aborted) {
		t.Fatalf("held append: got %v, want the hook's error", err)
	}
	check("after the held append rolled back")

	real := mustAppend(t, s, stream("real", flux.NoStream, events(2, "Real")...))
	got := readAll(t, s, flux.ReadAllOptions{After: checkpoint})
	if len(got) != 2 {
		t.Fatalf("a reader resuming after position %d got %d events, want the 2 of the append after the rollback", checkpoint, len(got))
	}
	for i, r := range got {
		if r.StreamID != "real" || r.Position != real.Positions[i] {
			t.Errorf("event %d after the checkpoint: stream %q position %d, want stream \"real\" position %d", i, r.StreamID, r.Position, real.Positions[i])
		}
	}
}
