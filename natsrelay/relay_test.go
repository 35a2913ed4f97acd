package natsrelay_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/natsrelay"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"a plain name is kept", "UserSignedUp", "UserSignedUp"},
		{"dots become underscores", "user.signed_up", "user_signed_up"},
		{"wildcards become underscores", "a*b>c", "a_b_c"},
		{"white space becomes underscores", "Budget Envelope\tx\ny", "Budget_Envelope_x_y"},
		{"control characters become underscores", "a\x00b\x7fc", "a_b_c"},
		{"unicode white space becomes an underscore", "a\u00a0b\u2003c", "a_b_c"},
		{"letters of any script are kept", "Ümlaut日本", "Ümlaut日本"},
		{"invalid UTF-8 bytes become underscores", "a\xffb", "a_b"},
		{"the empty name becomes an underscore", "", "_"},
		{"dollar and dash are kept", "$weird-name", "$weird-name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := natsrelay.Token(tt.in); got != tt.want {
				t.Errorf("Token(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSubject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, prefix, agg, event, want string
	}{
		{"default prefix", "flux", "User", "UserSignedUp", "flux.User.UserSignedUp"},
		{"prefix of two tokens", "acme.events", "User", "UserSignedUp", "acme.events.User.UserSignedUp"},
		{"names are mapped to single tokens", "flux", "Budget Envelope", "credited.v2>*", "flux.Budget_Envelope.credited_v2__"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := natsrelay.Subject(tt.prefix, tt.agg, tt.event); got != tt.want {
				t.Errorf("Subject(%q, %q, %q) = %q, want %q", tt.prefix, tt.agg, tt.event, got, tt.want)
			}
		})
	}
}

func TestMetadataHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, key, want string
	}{
		{"a token is kept", "traceparent", "Flux-Meta-traceparent"},
		{"case is kept", "TraceState", "Flux-Meta-TraceState"},
		{"a colon is escaped", "a:b", "Flux-Meta-a%3Ab"},
		{"spaces and control characters are escaped", "a b\r\n", "Flux-Meta-a%20b%0D%0A"},
		{"the percent sign is escaped, so the mapping is reversible", "100%", "Flux-Meta-100%25"},
		{"non-ASCII bytes are escaped", "é", "Flux-Meta-%C3%A9"},
		{"separators are escaped", `"(),/;<=>?@[\]{}`, "Flux-Meta-%22%28%29%2C%2F%3B%3C%3D%3E%3F%40%5B%5C%5D%7B%7D"},
		{"the empty key is a lone percent sign", "", "Flux-Meta-%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := natsrelay.MetadataHeader(tt.key); got != tt.want {
				t.Errorf("MetadataHeader(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, filter string
		want            bool
	}{
		{"flux.>", "flux.>", true},
		{">", "flux.>", true},
		{"*.>", "flux.>", true},
		{"flux.*", "flux.>", false},
		{"flux.User.*", "flux.>", false},
		{"flux", "flux.>", false},
		{"other.>", "flux.>", false},
		{"acme.>", "acme.events.>", true},
		{"acme.*.>", "acme.events.>", true},
		{"acme.events.>", "acme.>", false},
		{"flux.>", "flux", false},
		{"a.b", "a.b", true},
		{"a.*", "a.b", true},
		{"a.b", "a.*", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s covers %s is %v", tt.pattern, tt.filter, tt.want), func(t *testing.T) {
			t.Parallel()
			if got := natsrelay.Covers(tt.pattern, tt.filter); got != tt.want {
				t.Errorf("covers(%q, %q) = %v, want %v", tt.pattern, tt.filter, got, tt.want)
			}
		})
	}
}

func TestMessageCarriesTheStoredEventAndItsMetadata(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.FixedZone("CET", 3600))
	rec := flux.Record{
		Position: 42, StreamID: "acc-1", StreamVersion: 7, AggregateType: "Budget Envelope",
		EventID: "0195f2a4-0000-7000-8000-000000000001", EventName: "credited.v2", EventVersion: 2,
		Payload: []byte(`{"cents":5}`), OccurredAt: at,
		Metadata: flux.Metadata{
			RequestID: "req-1", CorrelationID: "corr-1", CausationID: "cause-1",
			Extra: map[string]string{"traceparent": "00-abc-def-01", "tenant id": "t1"},
		},
	}
	msg := natsrelay.Message("acme", &rec)
	if want := "acme.Budget_Envelope.credited_v2"; msg.Subject != want {
		t.Errorf("subject %q, want %q", msg.Subject, want)
	}
	if string(msg.Data) != `{"cents":5}` {
		t.Errorf("data %q, want the stored payload", msg.Data)
	}
	want := nats.Header{
		"Nats-Msg-Id":           {rec.EventID},
		"Flux-Event-Name":       {"credited.v2"},
		"Flux-Event-Version":    {"2"},
		"Flux-Aggregate-Type":   {"Budget Envelope"},
		"Flux-Stream-Id":        {"acc-1"},
		"Flux-Stream-Version":   {"7"},
		"Flux-Position":         {"42"},
		"Flux-Occurred-At":      {"2026-03-04T04:06:07.123456Z"},
		"Flux-Request-Id":       {"req-1"},
		"Flux-Correlation-Id":   {"corr-1"},
		"Flux-Causation-Id":     {"cause-1"},
		"Flux-Meta-traceparent": {"00-abc-def-01"},
		"Flux-Meta-tenant%20id": {"t1"},
	}
	if !maps.EqualFunc(msg.Header, want, slices.Equal) {
		t.Errorf("headers\n got %v\nwant %v", msg.Header, want)
	}

	t.Run("unset IDs are left out", func(t *testing.T) {
		bare := rec
		bare.Metadata = flux.Metadata{}
		h := natsrelay.Message("flux", &bare).Header
		for _, k := range []string{natsrelay.HeaderRequestID, natsrelay.HeaderCorrelationID, natsrelay.HeaderCausationID} {
			if _, ok := h[k]; ok {
				t.Errorf("header %s set for an empty ID", k)
			}
		}
	})
}

// offlineConn is a connection that was never opened: enough for New,
// which does no I/O.
func offlineConn(reconnectBuf int) *nats.Conn {
	opts := nats.GetDefaultOptions()
	opts.ReconnectBufSize = reconnectBuf
	opts.MaxReconnect = -1
	return &nats.Conn{Opts: opts}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	ordered := offlineConn(-1)
	otherJS, err := jetstream.New(offlineConn(-1))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  natsrelay.Config
		want []string // substrings of the error; none: valid
		n    int      // problems reported
	}{
		{"defaults with a connection and checkpoints are valid", natsrelay.Config{Conn: ordered, Checkpoints: store}, nil, 0},
		{"a JetStream handle is enough", natsrelay.Config{JetStream: otherJS, Checkpoints: store}, nil, 0},
		{"no connection", natsrelay.Config{Checkpoints: store}, []string{"neither Config.JetStream nor Config.Conn"}, 1},
		{"two different connections", natsrelay.Config{JetStream: otherJS, Conn: ordered, Checkpoints: store}, []string{"both set, to different connections"}, 1},
		{"no checkpoint store", natsrelay.Config{Conn: ordered}, []string{"Config.Checkpoints is nil"}, 1},
		{"a connection that buffers while reconnecting", natsrelay.Config{Conn: offlineConn(1 << 20), Checkpoints: store},
			[]string{"buffers up to 1048576 bytes", "nats.ReconnectBufSize(-1)", "Config.Unordered"}, 1},
		{"a buffering connection is allowed when unordered", natsrelay.Config{Conn: offlineConn(1 << 20), Checkpoints: store, Unordered: true}, nil, 0},
		{"stream name with a dot", natsrelay.Config{Conn: ordered, Checkpoints: store, Stream: "a.b"}, []string{`Config.Stream "a.b"`}, 1},
		{"prefix with a wildcard", natsrelay.Config{Conn: ordered, Checkpoints: store, SubjectPrefix: "flux.*"}, []string{`Config.SubjectPrefix "flux.*"`, "wildcards"}, 1},
		{"prefix with an empty token", natsrelay.Config{Conn: ordered, Checkpoints: store, SubjectPrefix: "flux."}, []string{"empty token"}, 1},
		{"prefix in the system namespace", natsrelay.Config{Conn: ordered, Checkpoints: store, SubjectPrefix: "$JS"}, []string{"'$'"}, 1},
		{"negative durations", natsrelay.Config{Conn: ordered, Checkpoints: store, DuplicateWindow: -1, AckTimeout: -1},
			[]string{"Config.DuplicateWindow -1ns is negative", "Config.AckTimeout -1ns is negative"}, 2},
		{"ack timeout not shorter than the window", natsrelay.Config{Conn: ordered, Checkpoints: store, DuplicateWindow: time.Minute, AckTimeout: time.Minute},
			[]string{"not shorter than Config.DuplicateWindow"}, 1},
		{"every problem at once", natsrelay.Config{Stream: "a b", SubjectPrefix: ">", AckTimeout: -1},
			[]string{"neither", "Checkpoints is nil", "Config.Stream", "Config.SubjectPrefix", "AckTimeout -1ns"}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := natsrelay.New(tt.cfg)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if r.Name() != natsrelay.DefaultName || r.Stream() != natsrelay.DefaultStream || r.SubjectPrefix() != natsrelay.DefaultSubjectPrefix {
					t.Errorf("defaults: name %q, stream %q, prefix %q", r.Name(), r.Stream(), r.SubjectPrefix())
				}
				return
			}
			if err == nil {
				t.Fatal("New accepted the config")
			}
			if !errors.Is(err, natsrelay.ErrInvalidConfig) {
				t.Errorf("error does not match ErrInvalidConfig: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if got := strings.Count(err.Error(), "natsrelay: invalid config"); got != tt.n {
				t.Errorf("%d problems reported, want %d:\n%v", got, tt.n, err)
			}
		})
	}
}

func TestNewRunnerChecksTheRunnerSuitsTheRelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	relay, err := natsrelay.New(natsrelay.Config{Conn: offlineConn(-1), Checkpoints: e.store})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  projection.RunnerConfig
		want string
	}{
		{"the default backoff fits the default window", projection.RunnerConfig{Repository: e.repo}, ""},
		{"a max backoff reaching the duplicate window is refused", projection.RunnerConfig{Repository: e.repo, MaxBackoff: 115 * time.Second}, "RunnerConfig.MaxBackoff 1m55s plus Config.AckTimeout 10s reaches Config.DuplicateWindow 2m0s"},
		{"skipping undecodable events is harmless: the relay reads raw records", projection.RunnerConfig{Repository: e.repo, Undecodable: projection.SkipUndecodable}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			runner, err := relay.NewRunner(tt.cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s := status(t, runner, natsrelay.DefaultName); s.Name != natsrelay.DefaultName {
					t.Errorf("relay not added: %+v", s)
				}
				return
			}
			if !errors.Is(err, natsrelay.ErrInvalidConfig) || !strings.Contains(fmt.Sprint(err), tt.want) {
				t.Errorf("error %v, want ErrInvalidConfig with %q", err, tt.want)
			}
		})
	}
}

func TestPublishErrorSaysWhatHappened(t *testing.T) {
	t.Parallel()
	err := error(&natsrelay.PublishError{
		Relay: "natsrelay", StreamID: "acc-1", StreamVersion: 3, Position: 17, EventID: "ev-17",
		Subject: "flux.Account.Deposited", Stream: "FLUX", Checkpoint: 12, Err: jetstream.ErrNoStreamResponse,
	})
	if !errors.Is(err, natsrelay.ErrNotAcknowledged) || !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Errorf("%v does not match ErrNotAcknowledged and its cause", err)
	}
	for _, want := range []string{`"acc-1" version 3, position 17`, `subject "flux.Account.Deposited"`, `stream "FLUX"`, "checkpoint not advanced (stays at 12)", "no response from stream"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestApplyBatchWithNothingReadDoesNothing(t *testing.T) {
	t.Parallel()
	store := memstore.New()
	relay, err := natsrelay.New(natsrelay.Config{Conn: offlineConn(-1), Checkpoints: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay.ApplyBatch(context.Background(), nil, 5, 5); err != nil {
		t.Fatal(err)
	}
	if cp, err := relay.Checkpoint(context.Background()); err != nil || cp.Position != 0 {
		t.Errorf("checkpoint %+v, %v; want untouched", cp, err)
	}
}
