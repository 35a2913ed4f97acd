package natsrelay_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/natsrelay"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/nats-io/nats.go/jetstream"
)

const benchBatch = 500 // the runner's default batch size

// benchEvents appends n events (accounts of 100 events) and returns them
// as a subscription would deliver them.
func benchEvents(b *testing.B, n int) (*env, []flux.Envelope) {
	b.Helper()
	e := newEnv(b)
	for i := 0; i < n; i += 100 {
		amounts := make([]int, min(n-i, 100)-1)
		for j := range amounts {
			amounts[j] = j
		}
		e.openAccount(context.Background(), b, fmt.Sprintf("acc-%d", i), amounts...)
	}
	var out []flux.Envelope
	for env, err := range e.repo.AllEvents(context.Background(), flux.ReadAllOptions{}) {
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, env)
	}
	return e, out
}

func batches(events []flux.Envelope, fn func(batch []flux.Envelope, from, to int64) error) error {
	for i := 0; i < len(events); i += benchBatch {
		batch := events[i:min(i+benchBatch, len(events))]
		if err := fn(batch, batch[0].Position-1, batch[len(batch)-1].Position); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkRelay measures events per second relayed to JetStream: the raw
// client baseline (async publish of the same messages, wait for every ack,
// batch by batch), the relay's ApplyBatch (the same plus the checkpoint),
// and the relay in a projection.Runner (plus reading and decoding the log).
func BenchmarkRelay(b *testing.B) {
	nc := connect(b, natsURL(b))
	js := jetStream(b, nc)

	b.Run("raw PublishMsgAsync", func(b *testing.B) {
		stream, prefix := testStream(b, js)
		if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"}, Storage: jetstream.FileStorage}); err != nil {
			b.Fatal(err)
		}
		_, events := benchEvents(b, b.N)
		b.ResetTimer()
		err := batches(events, func(batch []flux.Envelope, _, _ int64) error {
			futures := make([]jetstream.PubAckFuture, len(batch))
			for i := range batch {
				f, err := js.PublishMsgAsync(natsrelay.Message(prefix, &batch[i].Record))
				if err != nil {
					return err
				}
				futures[i] = f
			}
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})

	b.Run("Relay.ApplyBatch", func(b *testing.B) {
		stream, prefix := testStream(b, js)
		e, events := benchEvents(b, b.N)
		relay, err := natsrelay.New(natsrelay.Config{Conn: nc, Checkpoints: e.store, Stream: stream, SubjectPrefix: prefix})
		if err != nil {
			b.Fatal(err)
		}
		if err := relay.EnsureStream(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		if err := batches(events, func(batch []flux.Envelope, from, to int64) error {
			return relay.ApplyBatch(context.Background(), batch, from, to)
		}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})

	b.Run("Relay in a Runner", func(b *testing.B) {
		stream, prefix := testStream(b, js)
		e, _ := benchEvents(b, b.N)
		relay, err := natsrelay.New(natsrelay.Config{Conn: nc, Checkpoints: e.store, Stream: stream, SubjectPrefix: prefix})
		if err != nil {
			b.Fatal(err)
		}
		if err := relay.EnsureStream(context.Background()); err != nil {
			b.Fatal(err)
		}
		runner, err := relay.NewRunner(projection.RunnerConfig{Repository: e.repo, PollInterval: time.Millisecond})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		b.ResetTimer()
		go func() {
			defer close(done)
			_ = runner.Run(ctx)
		}()
		for e.checkpoint(b, natsrelay.DefaultName) < int64(b.N) {
			time.Sleep(100 * time.Microsecond)
		}
		b.StopTimer()
		cancel()
		<-done
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
