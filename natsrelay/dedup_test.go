package natsrelay_test

import (
	"context"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/natsrelay"
)

// TestRepublishedBatchIsStoredOnce publishes batches again, as the runner
// does after a lost acknowledgement or a crash before the checkpoint was
// saved: JetStream stores every event once, in order.
func TestRepublishedBatchIsStoredOnce(t *testing.T) {
	t.Parallel()
	nc := connect(t, natsURL(t))
	js := jetStream(t, nc)
	stream, prefix := testStream(t, js)
	e := newEnv(t)
	for _, id := range []string{"acc-1", "acc-2", "acc-3"} {
		e.openAccount(t.Context(), t, id, 1, 2, 3)
	}
	var events []flux.Envelope
	for env, err := range e.repo.AllEvents(t.Context(), flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, env)
	}
	n := int64(len(events))
	relay, err := natsrelay.New(natsrelay.Config{Conn: nc, Checkpoints: e.store, Stream: stream, SubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// The first part of the batch reached the stream, then the relay
	// stopped before the checkpoint.
	if err := relay.ApplyBatch(ctx, events[:5], 0, 5); err != nil {
		t.Fatal(err)
	}
	if err := e.store.DeleteCheckpoint(ctx, natsrelay.DefaultName); err != nil {
		t.Fatal(err)
	}
	// The retry publishes the whole batch, twice over (a relay that
	// finds its checkpoint moved does not save it: start from 0 again).
	for range 2 {
		if err := e.store.DeleteCheckpoint(ctx, natsrelay.DefaultName); err != nil {
			t.Fatal(err)
		}
		if err := relay.ApplyBatch(ctx, events, 0, n); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.checkpoint(t, natsrelay.DefaultName); got != n {
		t.Errorf("checkpoint %d, want %d", got, n)
	}
	checkMessages(t, prefix, readStream(t, js, stream), e.records(t))
}
