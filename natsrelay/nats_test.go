package natsrelay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/natsrelay"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/nats-io/nats.go/jetstream"
)

// storedBefore returns a checkpoint audit failing when the stream holds
// fewer messages than the events the relay must have published up to the
// checkpoint: proof that the checkpoint only moves after the acks.
func storedBefore(t testing.TB, js jetstream.JetStream, stream string, e *env, keep func(flux.Record) bool) func(projection.Checkpoint) error {
	return func(cp projection.Checkpoint) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return fmt.Errorf("checkpoint %d: stream %s: %w", cp.Position, stream, err)
		}
		want := 0
		for rec, err := range e.store.ReadAll(ctx, flux.ReadAllOptions{}) {
			if err != nil {
				return err
			}
			if rec.Position <= cp.Position && keep(rec) {
				want++
			}
		}
		if got := s.CachedInfo().State.Msgs; got < uint64(want) {
			return fmt.Errorf("checkpoint saved at position %d while the stream holds %d messages, want >= %d", cp.Position, got, want)
		}
		return nil
	}
}

func all(flux.Record) bool { return true }

// checkMessages checks that msgs are recs, in order, as stored.
func checkMessages(t testing.TB, prefix string, msgs []jetstream.Msg, recs []flux.Record) {
	t.Helper()
	if len(msgs) != len(recs) {
		t.Fatalf("stream holds %d messages, want %d", len(msgs), len(recs))
	}
	for i, m := range msgs {
		rec := recs[i]
		if want := natsrelay.Subject(prefix, rec.AggregateType, rec.EventName); m.Subject() != want {
			t.Errorf("message %d: subject %q, want %q", i, m.Subject(), want)
		}
		if !bytes.Equal(m.Data(), rec.Payload) {
			t.Errorf("message %d: data %s, want the stored payload %s", i, m.Data(), rec.Payload)
		}
		h := m.Headers()
		want := map[string]string{
			natsrelay.HeaderMsgID:         rec.EventID,
			natsrelay.HeaderEventName:     rec.EventName,
			natsrelay.HeaderEventVersion:  strconv.Itoa(rec.EventVersion),
			natsrelay.HeaderAggregateType: rec.AggregateType,
			natsrelay.HeaderStreamID:      rec.StreamID,
			natsrelay.HeaderStreamVersion: strconv.FormatInt(rec.StreamVersion, 10),
			natsrelay.HeaderPosition:      strconv.FormatInt(rec.Position, 10),
			natsrelay.HeaderOccurredAt:    rec.OccurredAt.UTC().Format(time.RFC3339Nano),
			natsrelay.HeaderRequestID:     rec.Metadata.RequestID,
			natsrelay.HeaderCorrelationID: rec.Metadata.CorrelationID,
			natsrelay.HeaderCausationID:   rec.Metadata.CausationID,
		}
		for k, v := range rec.Metadata.Extra {
			want[natsrelay.MetadataHeader(k)] = v
		}
		for k, v := range want {
			if got := h.Get(k); got != v {
				t.Errorf("message %d (position %d): header %s = %q, want %q", i, rec.Position, k, got, v)
			}
		}
	}
}

func TestRelayPublishesEveryEventAsStoredAndCheckpointsAfterTheAcks(t *testing.T) {
	t.Parallel()
	nc := connect(t, natsURL(t))
	js := jetStream(t, nc)
	stream, prefix := testStream(t, js)
	e := newEnv(t)

	ctx := flux.WithRequestID(t.Context(), "req-1")
	ctx = flux.WithCorrelationID(ctx, "corr-1")
	ctx = flux.WithCausationID(ctx, "cause-1")
	ctx = flux.WithMetadata(ctx, "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	ctx = flux.WithMetadata(ctx, "tenant id", "t-1")
	e.openAccount(ctx, t, "acc-1", 10, 20)
	odd := new(Envelope)
	odd.SetID("env-1")
	flux.Raise(odd, Credited{Cents: 5})
	if err := e.repo.Save(t.Context(), odd); err != nil {
		t.Fatal(err)
	}

	audit := &auditedCheckpoints{CheckpointStore: e.store, check: storedBefore(t, js, stream, e, all)}
	obs := &recordingObserver{}
	relay, err := natsrelay.New(natsrelay.Config{Conn: nc, Checkpoints: audit, Stream: stream, SubjectPrefix: prefix, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := relay.NewRunner(runnerConfig(e, nil))
	if err != nil {
		t.Fatal(err)
	}
	startRunner(t, runner)
	waitFor(t, 10*time.Second, "the relay to catch up", func() bool { return e.checkpoint(t, natsrelay.DefaultName) == e.head(t) })

	// Events appended while the relay follows the log arrive too.
	for i := range 5 {
		e.openAccount(t.Context(), t, fmt.Sprintf("acc-%d", i+2), i)
	}
	waitFor(t, 10*time.Second, "the relay to follow", func() bool { return e.checkpoint(t, natsrelay.DefaultName) == e.head(t) })

	msgs := readStream(t, js, stream)
	checkMessages(t, prefix, msgs, e.records(t))
	if got, want := msgs[3].Subject(), prefix+".Budget_Envelope.credited_v2__"; got != want {
		t.Errorf("odd names: subject %q, want %q", got, want)
	}
	saves, err := audit.result()
	if err != nil {
		t.Error(err)
	}
	if saves == 0 {
		t.Error("the checkpoint was never saved")
	}
	s := status(t, runner, natsrelay.DefaultName)
	if s.Position != e.head(t) || s.LastError != "" || s.Processed != int64(len(msgs)) {
		t.Errorf("status %+v, want position %d, %d processed, no error", s, e.head(t), len(msgs))
	}
	// The observer saw every published batch.
	events, last, failed, err := obs.published()
	if err != nil || events != len(msgs) || last != e.head(t) || failed != 0 {
		t.Errorf("observed %d events published up to %d, %d failed batches (%v); want %d up to %d", events, last, failed, err, len(msgs), e.head(t))
	}
}

func TestRelayNeverSendsPersonalDataInClear(t *testing.T) {
	t.Parallel()
	nc := connect(t, natsURL(t))
	js := jetStream(t, nc)
	stream, prefix := testStream(t, js)
	e := newEnv(t)
	emails := map[string]string{}
	for i := range 3 {
		id := fmt.Sprintf("member-%d", i)
		emails[id] = id + "@canary.example"
		m := new(Member)
		m.SetID(id)
		flux.Raise(m, SignedUp{UserID: id, Email: emails[id], Plan: "gold"})
		if err := e.repo.Save(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	relay, err := natsrelay.New(natsrelay.Config{Conn: nc, Checkpoints: e.store, Stream: stream, SubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.EnsureStream(t.Context()); err != nil {
		t.Fatal(err)
	}
	runner, err := relay.NewRunner(runnerConfig(e, nil))
	if err != nil {
		t.Fatal(err)
	}
	startRunner(t, runner)
	waitFor(t, 10*time.Second, "the relay to catch up", func() bool { return e.checkpoint(t, natsrelay.DefaultName) == e.head(t) })

	msgs := readStream(t, js, stream)
	checkMessages(t, prefix, msgs, e.records(t))
	for _, m := range msgs {
		id := m.Headers().Get(natsrelay.HeaderStreamID)
		clear := emails[id]
		if bytes.Contains(m.Data(), []byte("canary")) {
			t.Errorf("message of %s carries personal data in clear: %s", id, m.Data())
		}
		for k, vs := range m.Headers() {
			if strings.Contains(k+strings.Join(vs, ","), "canary") {
				t.Errorf("header %s of %s carries personal data in clear: %v", k, id, vs)
			}
		}
		var p map[string]any
		if err := json.Unmarshal(m.Data(), &p); err != nil {
			t.Fatalf("payload of %s is not JSON: %v", id, err)
		}
		if p["email"] == clear || p["email"] == nil || p["plan"] != "gold" {
			t.Errorf("payload of %s: email %v, plan %v; want the email encrypted and the plan in clear", id, p["email"], p["plan"])
		}
		// A consumer holding the key can read it: the ciphertext is the
		// stored one, bound to its event.
		version, _ := strconv.Atoi(m.Headers().Get(natsrelay.HeaderEventVersion))
		env, err := e.repo.Decode(t.Context(), flux.Record{
			EventID: m.Headers().Get(natsrelay.HeaderMsgID), EventName: m.Headers().Get(natsrelay.HeaderEventName),
			EventVersion: version, AggregateType: m.Headers().Get(natsrelay.HeaderAggregateType), StreamID: id, Payload: m.Data(),
		})
		if err != nil {
			t.Fatalf("decode the relayed event of %s: %v", id, err)
		}
		if got := env.Event.(SignedUp).Email; got != clear {
			t.Errorf("relayed event of %s decodes to email %q, want %q", id, got, clear)
		}
	}
}

func TestRelayFilter(t *testing.T) {
	t.Parallel()
	nc := connect(t, natsURL(t))
	js := jetStream(t, nc)
	stream, prefix := testStream(t, js)
	e := newEnv(t)
	e.openAccount(t.Context(), t, "acc-1", 1)
	m := new(Member)
	m.SetID("member-1")
	flux.Raise(m, SignedUp{UserID: "member-1", Email: "m@example.com"})
	if err := e.repo.Save(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	e.openAccount(t.Context(), t, "acc-2", 2, 3)

	onlyDeposits := func(r flux.Record) bool { return r.EventName == "Deposited" }
	audit := &auditedCheckpoints{CheckpointStore: e.store, check: storedBefore(t, js, stream, e, onlyDeposits)}
	relay, err := natsrelay.New(natsrelay.Config{
		Conn: nc, Checkpoints: audit, Stream: stream, SubjectPrefix: prefix, Name: "deposits",
		Filter: projection.Filter{AggregateTypes: []string{"Account"}, EventNames: []string{"Deposited"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := relay.NewRunner(runnerConfig(e, nil))
	if err != nil {
		t.Fatal(err)
	}
	startRunner(t, runner)
	waitFor(t, 10*time.Second, "the relay to catch up", func() bool { return e.checkpoint(t, "deposits") == e.head(t) })

	var want []flux.Record
	for _, r := range e.records(t) {
		if onlyDeposits(r) {
			want = append(want, r)
		}
	}
	checkMessages(t, prefix, readStream(t, js, stream), want)
	if _, err := audit.result(); err != nil {
		t.Error(err)
	}
}

func TestEnsureStream(t *testing.T) {
	t.Parallel()
	nc := connect(t, natsURL(t))
	js := jetStream(t, nc)
	e := newEnv(t)

	t.Run("an existing stream missing the subjects and window is updated, keeping its settings", func(t *testing.T) {
		t.Parallel()
		stream, prefix := testStream(t, js)
		if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{
			Name: stream, Subjects: []string{prefix + "-other.>"}, Duplicates: 30 * time.Second,
			Storage: jetstream.MemoryStorage, MaxMsgs: 12345,
		}); err != nil {
			t.Fatal(err)
		}
		relay, err := natsrelay.New(natsrelay.Config{Conn: nc, Checkpoints: e.store, Stream: stream, SubjectPrefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		if err := relay.EnsureStream(t.Context()); err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(t.Context(), stream)
		if err != nil {
			t.Fatal(err)
		}
		c := s.CachedInfo().Config
		if !strings.Contains(strings.Join(c.Subjects, " "), prefix+".>") || c.Duplicates != natsrelay.DefaultDuplicateWindow ||
			c.MaxMsgs != 12345 || c.Storage != jetstream.MemoryStorage || len(c.Subjects) != 2 {
			t.Errorf("stream config after EnsureStream: subjects %v, duplicates %v, max msgs %d, storage %v", c.Subjects, c.Duplicates, c.MaxMsgs, c.Storage)
		}
	})

	tests := []struct {
		name   string
		create *jetstream.StreamConfig // nil: no stream
		want   func(prefix string) string
	}{
		{"a missing stream is an error when it must exist", nil, func(p string) string {
			return fmt.Sprintf("does not exist; create it with subjects %q", p+".>")
		}},
		{"a stream not capturing the subjects is an error", &jetstream.StreamConfig{Subjects: []string{"elsewhere.>"}}, func(p string) string {
			return fmt.Sprintf("not %q: the relay's events would not be stored", p+".>")
		}},
		{"a too short duplicate window is an error", &jetstream.StreamConfig{Duplicates: 10 * time.Second}, func(string) string {
			return "keeps a duplicate window of 10s, shorter than Config.DuplicateWindow 2m0s"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" with ExistingStream", func(t *testing.T) {
			t.Parallel()
			stream, prefix := testStream(t, js)
			if tt.create != nil {
				c := *tt.create
				c.Name = stream
				if c.Subjects == nil {
					c.Subjects = []string{prefix + ".>"}
				} else {
					c.Subjects = []string{unique("elsewhere") + ".>"}
				}
				if _, err := js.CreateStream(t.Context(), c); err != nil {
					t.Fatal(err)
				}
			}
			relay, err := natsrelay.New(natsrelay.Config{Conn: nc, Checkpoints: e.store, Stream: stream, SubjectPrefix: prefix, ExistingStream: true})
			if err != nil {
				t.Fatal(err)
			}
			err = relay.EnsureStream(t.Context())
			if !errors.Is(err, natsrelay.ErrStreamSetup) {
				t.Fatalf("EnsureStream: %v, want ErrStreamSetup", err)
			}
			want := tt.want(prefix)
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), stream) {
				t.Errorf("error %q lacks %q or the stream name", err, want)
			}
			if _, err := js.Stream(t.Context(), stream); tt.create == nil && err == nil {
				t.Error("the stream was created although ExistingStream is set")
			}
		})
	}
}

// TestFailedPublishDoesNotAdvanceTheCheckpoint breaks the broker under a
// running relay: the batch fails, the checkpoint stays, the status shows
// the error, and once the broker is back every event arrives once.
func TestFailedPublishDoesNotAdvanceTheCheckpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		private  bool // a private server this test may stop
		existing bool
		breakIt  func(t *testing.T, js jetstream.JetStream, stream string, srv *server)
		heal     func(t *testing.T, js jetstream.JetStream, stream, prefix string, srv *server)
		after    int // events in the stream at the end
	}{
		{
			name: "stream deleted under the relay", existing: true,
			breakIt: func(t *testing.T, js jetstream.JetStream, stream string, _ *server) {
				if err := js.DeleteStream(t.Context(), stream); err != nil {
					t.Fatal(err)
				}
			},
			heal: func(t *testing.T, js jetstream.JetStream, stream, prefix string, _ *server) {
				if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"}, Duplicates: 2 * time.Minute}); err != nil {
					t.Fatal(err)
				}
			},
			after: 3, // the recreated stream holds what came after the checkpoint
		},
		{
			name: "server down", private: true,
			breakIt: func(t *testing.T, _ jetstream.JetStream, _ string, srv *server) { srv.stop(syscall.SIGKILL) },
			heal:    func(t *testing.T, _ jetstream.JetStream, _, _ string, srv *server) { srv.restart() },
			after:   6,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var srv *server
			url := natsURL(t)
			if tt.private {
				srv = startServer(t)
				url = srv.url()
			}
			nc := connect(t, url)
			js := jetStream(t, nc)
			stream, prefix := testStream(t, js)
			if tt.existing {
				tt.heal(t, js, stream, prefix, srv)
			}
			e := newEnv(t)
			e.openAccount(t.Context(), t, "acc-1", 1, 2)
			var logs syncBuffer
			obs := &recordingObserver{}
			relay, err := natsrelay.New(natsrelay.Config{Conn: nc, Checkpoints: e.store, Stream: stream, SubjectPrefix: prefix, ExistingStream: tt.existing, Observer: obs})
			if err != nil {
				t.Fatal(err)
			}
			runner, err := relay.NewRunner(runnerConfig(e, newLogger(&logs)))
			if err != nil {
				t.Fatal(err)
			}
			startRunner(t, runner)
			waitFor(t, 10*time.Second, "the first events", func() bool { return e.checkpoint(t, natsrelay.DefaultName) == 3 })

			tt.breakIt(t, js, stream, srv)
			e.openAccount(t.Context(), t, "acc-2", 3, 4)
			waitFor(t, 20*time.Second, "two failed attempts", func() bool { return status(t, runner, natsrelay.DefaultName).Failures >= 2 })

			if got := e.checkpoint(t, natsrelay.DefaultName); got != 3 {
				t.Errorf("checkpoint moved to %d while the broker was broken, want 3", got)
			}
			s := status(t, runner, natsrelay.DefaultName)
			if s.Position != 3 || !strings.Contains(s.LastError, "checkpoint not advanced (stays at 3)") || s.LastErrorAt.IsZero() {
				t.Errorf("status position %d, last error %q; want position 3 and the error", s.Position, s.LastError)
			}
			if l := logs.String(); !contains(l, "not acknowledged by JetStream", `\"acc-2\" version 1, position 4)`) {
				t.Errorf("no publish failure of the first unrelayed event logged:\n%s", l)
			}

			tt.heal(t, js, stream, prefix, srv)
			waitFor(t, 30*time.Second, "the relay to recover", func() bool { return e.checkpoint(t, natsrelay.DefaultName) == 6 })
			if s := status(t, runner, natsrelay.DefaultName); s.Failures != 0 || s.Position != 6 {
				t.Errorf("status after recovery: %+v", s)
			}
			recs := e.records(t)
			checkMessages(t, prefix, readStream(t, js, stream), recs[len(recs)-tt.after:])
			// The observer saw the failed batches, then the recovery.
			if _, last, failed, err := obs.published(); err != nil || failed < 2 || last != 6 {
				t.Errorf("observed %d failed batches, last position %d (%v); want >= 2 and 6", failed, last, err)
			}
		})
	}
}
