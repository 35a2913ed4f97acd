package natsrelay_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/natsrelay"
	"github.com/fluxcapacitor/flux/projection"
)

// TestRelaySurvivesServerRestarts is the acceptance test: 10,000 events are
// appended and relayed while a private nats-server is killed and started
// again twice (SIGKILL, then SIGTERM), on the same port and store. The
// connection reconnects, the runner's backoff carries the relay over each
// outage, and the stream ends up with every event exactly once, in global
// order.
func TestRelaySurvivesServerRestarts(t *testing.T) {
	t.Parallel()
	natsURL(t) // part of the NATS suite; it runs a server of its own
	srv := startServer(t)
	nc := connect(t, srv.url())
	js := jetStream(t, nc)
	stream, prefix := testStream(t, js)
	e := newEnv(t)

	var logs syncBuffer
	relay, err := natsrelay.New(natsrelay.Config{Conn: nc, Checkpoints: e.store, Stream: stream, SubjectPrefix: prefix, AckTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := relay.NewRunner(projection.RunnerConfig{
		Repository: e.repo, PollInterval: 5 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: time.Second, Logger: newLogger(&logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	startRunner(t, runner)

	const (
		accounts = 1000
		perSave  = 10 // Opened + 9 Deposited
		total    = accounts * perSave
	)
	start := time.Now()
	written := make(chan error, 1)
	go func() {
		for i := range accounts {
			a := new(Account)
			a.SetID(fmt.Sprintf("acc-%04d", i))
			flux.Raise(a, Opened{Owner: a.ID()})
			for n := range perSave - 1 {
				flux.Raise(a, Deposited{Amount: n + 1})
			}
			if err := e.repo.Save(context.Background(), a); err != nil {
				written <- err
				return
			}
			time.Sleep(2 * time.Millisecond) // keep writing through the outages
		}
		written <- nil
	}()

	for _, restart := range []struct {
		at  int64
		sig syscall.Signal
	}{{2500, syscall.SIGKILL}, {6000, syscall.SIGTERM}} {
		waitFor(t, 60*time.Second, fmt.Sprintf("the relay to pass position %d", restart.at), func() bool {
			return e.checkpoint(t, natsrelay.DefaultName) >= restart.at
		})
		if cp := e.checkpoint(t, natsrelay.DefaultName); cp >= total {
			t.Fatalf("the relay finished (checkpoint %d) before the outage planned at %d", cp, restart.at)
		}
		srv.stop(restart.sig)
		time.Sleep(300 * time.Millisecond)
		srv.restart()
	}
	if err := <-written; err != nil {
		t.Fatalf("append: %v", err)
	}
	waitFor(t, 120*time.Second, "the relay to relay every event", func() bool {
		return e.checkpoint(t, natsrelay.DefaultName) == total
	})
	took := time.Since(start)

	recs := e.records(t)
	if len(recs) != total {
		t.Fatalf("store holds %d events, want %d", len(recs), total)
	}
	msgs := readStream(t, js, stream)
	if len(msgs) != total {
		t.Fatalf("stream holds %d messages, want %d (every event once)", len(msgs), total)
	}
	ids := make(map[string]int, total)
	for i, m := range msgs {
		id := m.Headers().Get(natsrelay.HeaderMsgID)
		if prev, dup := ids[id]; dup {
			t.Fatalf("event %s stored twice: messages %d and %d", id, prev, i)
		}
		ids[id] = i
		pos, err := strconv.ParseInt(m.Headers().Get(natsrelay.HeaderPosition), 10, 64)
		if err != nil || pos != int64(i+1) || id != recs[i].EventID {
			t.Fatalf("message %d: position %q, ID %s; want position %d, ID %s (global order)",
				i, m.Headers().Get(natsrelay.HeaderPosition), id, i+1, recs[i].EventID)
		}
	}
	if len(ids) != total {
		t.Fatalf("%d distinct Nats-Msg-Id, want %d", len(ids), total)
	}
	failures := strings.Count(logs.String(), "projection failed; retrying")
	if failures < 2 {
		t.Errorf("%d failed batches logged; want at least one per outage, so that the outages were crossed mid-flight", failures)
	}
	s := status(t, runner, natsrelay.DefaultName)
	t.Logf("relayed %d events across 2 server restarts in %v (writer paced); %d failed attempts retried; stats %+v; status position %d, failures %d",
		total, took.Round(time.Millisecond), failures, nc.Stats(), s.Position, s.Failures)
}
