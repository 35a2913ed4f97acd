package fluxcli

import (
	"context"
	"fmt"
	"time"

	"github.com/fluxcapacitor/flux/natsrelay"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/nats-io/nats.go"
)

const relaySynopsis = `Relays the global log to NATS JetStream until Ctrl-C: every event, in
global order, to the subject PREFIX.<aggregate type>.<event name>, with its
event ID as Nats-Msg-Id so that JetStream drops duplicates. The relay's
checkpoint (--name) is kept in the event store and advances only after
JetStream acknowledged the events; a stopped relay resumes from it. Personal
data is relayed as stored: encrypted. The stream is created if missing.

With --metrics-addr it serves Prometheus metrics: the relay's lag
(flux_projection_lag_seconds{flux_projection="natsrelay"}) and its batches
(flux_relay_*).`

func runRelay(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("relay --nats URL [--stream NAME] [--subject-prefix P] [--name NAME] [--metrics-addr ADDR]", relaySynopsis,
		"  flux relay --nats nats://127.0.0.1:4222\n  flux relay --nats nats://broker:4222 --stream EVENTS --subject-prefix acme.events --metrics-addr :9090")
	c := addCommon(fs)
	url := fs.String("nats", "", "NATS server `URL` (default $NATS_URL)")
	stream := fs.String("stream", natsrelay.DefaultStream, "JetStream `stream` to publish to")
	prefix := fs.String("subject-prefix", natsrelay.DefaultSubjectPrefix, "first token(s) of every `subject`")
	name := fs.String("name", natsrelay.DefaultName, "the relay's checkpoint `name` (one per broker)")
	metrics := fs.String("metrics-addr", "", "serve Prometheus metrics on this `address` (host:port)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *url == "" {
		*url = m.Getenv("NATS_URL")
	}
	if *url == "" {
		return &usageError{"give the NATS server: --nats URL (or NATS_URL)"}
	}
	if *metrics != "" {
		stop, err := m.serveMetrics(ctx, *metrics)
		if err != nil {
			return err
		}
		defer stop()
	}
	return m.withBackend(ctx, *c.dsn, readWrite, func(b *Backend) error {
		a, err := m.openApp(b)
		if err != nil {
			return err
		}
		nc, err := nats.Connect(*url, append(natsrelay.ConnOptions(), nats.Name("flux relay"), nats.Timeout(5*time.Second))...)
		if err != nil {
			return fmt.Errorf("connect to NATS at %s: %w", redact(*url), err)
		}
		defer nc.Close()
		relay, err := natsrelay.New(natsrelay.Config{Conn: nc, Checkpoints: b.store, Name: *name, Stream: *stream,
			SubjectPrefix: *prefix, Observer: m.observer})
		if err != nil {
			return err
		}
		if err := relay.EnsureStream(ctx); err != nil {
			return err
		}
		runner, err := relay.NewRunner(projection.RunnerConfig{Repository: a.repo, Clock: m.Clock})
		if err != nil {
			return err
		}
		if err := m.observeRunner(runner); err != nil {
			return err
		}
		fmt.Fprintf(m.Stdout, "relaying %s to JetStream stream %s (subjects %s.>) as %q; Ctrl-C to stop\n", b.where, relay.Stream(), relay.SubjectPrefix(), relay.Name())
		if err := runner.Run(ctx); err != nil {
			return err
		}
		st, err := runner.Status(context.WithoutCancel(ctx))
		if err != nil {
			return err
		}
		for _, s := range st {
			if s.Name == relay.Name() {
				fmt.Fprintf(m.Stdout, "stopped at position %d of %d\n", s.Position, s.Head)
			}
		}
		return nil
	})
}
