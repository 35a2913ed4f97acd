package natsrelay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config.
const (
	// DefaultName is the relay's projection and checkpoint name.
	DefaultName = "natsrelay"
	// DefaultStream is the JetStream stream the relay publishes to.
	DefaultStream = "FLUX"
	// DefaultDuplicateWindow is the stream's duplicate window: how long
	// JetStream remembers a Nats-Msg-Id to drop a redelivery.
	DefaultDuplicateWindow = 2 * time.Minute
	// DefaultAckTimeout bounds the wait for a batch's acknowledgements.
	DefaultAckTimeout = 10 * time.Second
)

// Config configures a Relay. Zero values are the documented defaults;
// JetStream or Conn, and Checkpoints, are required.
type Config struct {
	// JetStream publishes the events and manages the stream. Either it or
	// Conn is required. The relay uses the handle as configured: give it
	// jetstream.WithPublishAsyncTimeout so that acknowledgements a batch
	// stopped waiting for do not stay pending until the connection drops
	// (a handle the relay makes from Conn has it).
	JetStream jetstream.JetStream
	// Conn, when JetStream is nil, is the connection the relay makes its
	// JetStream handle from (with jetstream.WithPublishAsyncTimeout set to
	// AckTimeout). Open it with ConnOptions: it must reconnect, and unless
	// Unordered is set it must not buffer publishes while reconnecting.
	Conn *nats.Conn

	// Checkpoints keeps the relay's checkpoint: the position of the last
	// event JetStream acknowledged. Required; usually the event store,
	// which implements projection.CheckpointStore.
	Checkpoints projection.CheckpointStore
	// Name is the relay's projection name in a projection.Runner and the
	// name of its checkpoint. Default DefaultName ("natsrelay"). Two relays
	// of one store to two brokers need two names.
	Name string
	// Filter selects the events relayed (registered event names, aggregate
	// types); empty lists relay everything.
	Filter projection.Filter

	// Stream is the JetStream stream that stores the events. Default
	// DefaultStream ("FLUX"). Unless ExistingStream is set, the relay
	// creates it when missing (file storage, subjects SubjectPrefix+".>",
	// duplicate window DuplicateWindow, everything else the server's
	// defaults), and when it exists adds SubjectPrefix+".>" to its subjects
	// and raises its duplicate window to DuplicateWindow if they fall
	// short, leaving the rest of its configuration alone.
	Stream string
	// ExistingStream makes the relay use Stream as it is: it never creates
	// or updates it, and fails each batch with an error matching
	// ErrStreamSetup while the stream is missing, does not capture
	// SubjectPrefix+".>" or keeps a duplicate window shorter than
	// DuplicateWindow.
	ExistingStream bool
	// SubjectPrefix is the first token(s) of every subject:
	// SubjectPrefix.<aggregate type>.<event name> (see Subject). Default
	// DefaultSubjectPrefix ("flux"). It may hold several tokens
	// ("acme.events") but no wildcards, white space, control characters or
	// leading '$'.
	SubjectPrefix string
	// DuplicateWindow is the duplicate window the stream must keep.
	// Default DefaultDuplicateWindow (2 minutes). A batch that failed is
	// published again after the runner's backoff; JetStream drops its
	// events only if that happens within the window, so the window must
	// exceed the runner's MaxBackoff plus AckTimeout (NewRunner checks).
	DuplicateWindow time.Duration
	// AckTimeout is how long a batch waits, after its last publish, for
	// JetStream to acknowledge all its events; then the batch fails with
	// jetstream.ErrAsyncPublishTimeout and is retried. It also bounds the
	// wait for room when too many publishes are unacknowledged. Default
	// DefaultAckTimeout (10s); it must be shorter than DuplicateWindow.
	AckTimeout time.Duration
	// Unordered allows a connection that buffers publishes while it
	// reconnects (nats.ReconnectBufSize >= 0, the NATS default). Events
	// buffered during an outage are sent after it, possibly ahead of
	// earlier events of their batch that were lost with the connection and
	// are published again on the retry: every event still reaches the
	// stream exactly once within the duplicate window, but not necessarily
	// in global order. Default false: New refuses such a connection.
	Unordered bool

	// Observer, when set, sees every batch the relay publishes as a
	// flux.OpRelayPublish operation (events, position, error) — give it
	// the application's observer, e.g. a fluxotel.Observer, for relay
	// spans and metrics. The runner reports the batch as a projection
	// batch too, through the repository's observer. Default: none.
	Observer flux.Observer

	// Logger receives stream setup and a debug line per batch. Failures
	// are returned to the runner, which logs them. Default: discard.
	Logger *slog.Logger
	// Clock stamps the checkpoint. Default time.Now.
	Clock func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

// validate returns every problem of a defaulted config, joined.
func (c Config) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, configError(format, args...)) }
	switch {
	case c.JetStream == nil && c.Conn == nil:
		add("neither Config.JetStream nor Config.Conn is set; pass a jetstream.JetStream or a *nats.Conn opened with natsrelay.ConnOptions()")
	case c.JetStream != nil && c.Conn != nil && c.JetStream.Conn() != c.Conn:
		add("Config.JetStream and Config.Conn are both set, to different connections; set one")
	}
	if nc := c.conn(); nc != nil && !c.Unordered {
		if n := nc.Opts.ReconnectBufSize; n >= 0 {
			add("the NATS connection buffers up to %d bytes of publishes while reconnecting: after an outage they could reach JetStream ahead of earlier events that are published again; open it with nats.ReconnectBufSize(-1) (natsrelay.ConnOptions() does), or set Config.Unordered to accept events out of global order", n)
		}
	}
	if c.Checkpoints == nil {
		add("Config.Checkpoints is nil; pass the event store (it implements projection.CheckpointStore)")
	}
	if strings.TrimSpace(c.Name) != c.Name || len(c.Name) > flux.MaxNameLength {
		add("Config.Name %q: want a name without surrounding spaces, at most %d bytes", c.Name, flux.MaxNameLength)
	}
	if i := strings.IndexFunc(c.Stream, func(r rune) bool {
		return r == '.' || r == '*' || r == '>' || r == '/' || r == '\\' || unicode.IsSpace(r) || unicode.IsControl(r)
	}); i >= 0 {
		add("Config.Stream %q: a JetStream stream name may not hold %q", c.Stream, c.Stream[i:i+1])
	}
	if problem := validPrefix(c.SubjectPrefix); problem != "" {
		add("Config.SubjectPrefix %q %s", c.SubjectPrefix, problem)
	}
	if c.DuplicateWindow < 0 {
		add("Config.DuplicateWindow %v is negative", c.DuplicateWindow)
	}
	if c.AckTimeout < 0 {
		add("Config.AckTimeout %v is negative", c.AckTimeout)
	}
	if c.AckTimeout > 0 && c.DuplicateWindow > 0 && c.AckTimeout >= c.DuplicateWindow {
		add("Config.AckTimeout %v is not shorter than Config.DuplicateWindow %v: a batch retried after a timeout would be stored twice; raise the window or lower the timeout", c.AckTimeout, c.DuplicateWindow)
	}
	return errors.Join(errs...)
}

func (c Config) conn() *nats.Conn {
	if c.JetStream != nil {
		return c.JetStream.Conn()
	}
	return c.Conn
}

// ConnOptions returns the options of a NATS connection fit for a relay:
// reconnect forever (nats.MaxReconnects(-1)), so that the relay resumes
// after an outage of any length, and keep no reconnect buffer
// (nats.ReconnectBufSize(-1)), so that a publish during an outage fails at
// once instead of being sent after it, which keeps the stream in global
// order. Options given after these override them.
//
//	nc, err := nats.Connect(url, natsrelay.ConnOptions()...)
func ConnOptions() []nats.Option {
	return []nats.Option{nats.MaxReconnects(-1), nats.ReconnectBufSize(-1)}
}

// Relay forwards the global log to a JetStream stream. It is a
// projection.BatchHandler: add it to a projection.Runner (or use
// NewRunner), which feeds it batches in global order, retries a failed
// batch after a backoff and reports its position, lag and last error.
//
// For each batch it publishes every event asynchronously, waits for all
// acknowledgements and only then saves its checkpoint; if any event is not
// acknowledged it returns a *PublishError and the checkpoint stays where it
// was. It is safe for concurrent use; batches are applied one at a time.
type Relay struct {
	cfg Config
	js  jetstream.JetStream

	mu          sync.Mutex
	streamReady bool // the stream was checked since the last failure
}

var _ projection.BatchHandler = (*Relay)(nil)

// New returns a relay. It does no I/O: the stream is checked (and created
// or updated) by EnsureStream or the first batch. The error matches
// ErrInvalidConfig and lists every problem of cfg.
func New(cfg Config) (*Relay, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js := cfg.JetStream
	if js == nil {
		var err error
		js, err = jetstream.New(cfg.Conn, jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
		if err != nil {
			return nil, fmt.Errorf("natsrelay: JetStream handle: %w", err)
		}
	}
	if nc := js.Conn(); !nc.Opts.AllowReconnect || nc.Opts.MaxReconnect >= 0 {
		cfg.Logger.LogAttrs(context.Background(), slog.LevelWarn,
			"natsrelay: the NATS connection gives up reconnecting; after a long outage the relay fails until it is restarted with a new connection (use natsrelay.ConnOptions)",
			slog.String("relay", cfg.Name), slog.Bool("allow_reconnect", nc.Opts.AllowReconnect), slog.Int("max_reconnects", nc.Opts.MaxReconnect))
	}
	return &Relay{cfg: cfg, js: js}, nil
}

// Name implements projection.Projection: the configured Name.
func (r *Relay) Name() string { return r.cfg.Name }

// Filter implements projection.Projection: the configured Filter.
func (r *Relay) Filter() projection.Filter { return r.cfg.Filter }

// RawRecords implements projection.RawProjection: the relay forwards events
// as stored, so the runner neither decodes nor decrypts them, and an event
// the application cannot decode is relayed all the same.
func (r *Relay) RawRecords() bool { return true }

// Stream returns the name of the JetStream stream the relay publishes to.
func (r *Relay) Stream() string { return r.cfg.Stream }

// SubjectPrefix returns the prefix of every subject the relay publishes to.
func (r *Relay) SubjectPrefix() string { return r.cfg.SubjectPrefix }

// Checkpoint implements projection.BatchHandler: the position of the last
// event JetStream acknowledged (0 before the first batch).
func (r *Relay) Checkpoint(ctx context.Context) (projection.Checkpoint, error) {
	return r.cfg.Checkpoints.LoadCheckpoint(ctx, r.cfg.Name)
}

// ApplyBatch implements projection.BatchHandler. It publishes events (read
// after position from, up to to) to JetStream, each with Nats-Msg-Id set to
// its event ID, waits for every acknowledgement and then moves the
// checkpoint to to. The first time, and after every failure, it first makes
// sure of the stream (see EnsureStream).
//
// If an event is not acknowledged — the publish is refused, the server
// answers with an error, AckTimeout passes, the connection drops, ctx
// ends — it returns a *PublishError naming the event and subject, and the
// checkpoint stays at from. Events of the batch that JetStream did store
// are dropped as duplicates when the batch is published again within the
// duplicate window. If the checkpoint cannot be saved after every event
// was acknowledged, the error says so; the batch is then published again,
// and deduplicated, too.
func (r *Relay) ApplyBatch(ctx context.Context, events []flux.Envelope, from, to int64) (err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if to <= from {
		return nil
	}
	defer func() {
		if err != nil {
			r.streamReady = false
		}
	}()
	if obs := r.cfg.Observer; obs != nil && len(events) > 0 {
		links := make([]map[string]string, len(events))
		for i := range events {
			links[i] = events[i].Metadata.Extra
		}
		var end func(flux.Outcome)
		ctx, end = obs.Start(ctx, flux.Operation{Kind: flux.OpRelayPublish, Name: r.cfg.Name, Events: len(events), Links: links})
		defer func() { end(flux.Outcome{Err: err, Position: to}) }()
	}
	if err := r.ensureStream(ctx); err != nil {
		return fmt.Errorf("natsrelay %q: batch of positions %d to %d: %w; checkpoint not advanced (stays at %d)", r.cfg.Name, from+1, to, err, from)
	}
	start := r.cfg.Clock()
	futures := make([]jetstream.PubAckFuture, 0, len(events))
	for i := range events {
		msg := message(r.cfg.SubjectPrefix, &events[i].Record)
		f, err := r.js.PublishMsgAsync(msg,
			// No retries by the client: it would resend one event on its
			// own, after later ones. The runner retries the whole batch.
			jetstream.WithRetryAttempts(0),
			jetstream.WithStallWait(r.cfg.AckTimeout),
			// The stream that captures the subject must be ours.
			jetstream.WithExpectStream(r.cfg.Stream))
		if err != nil {
			return r.publishError(&events[i].Record, msg.Subject, from, err)
		}
		futures = append(futures, f)
	}
	timeout := time.NewTimer(r.cfg.AckTimeout)
	defer timeout.Stop()
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return r.publishError(&events[i].Record, f.Msg().Subject, from, err)
		case <-timeout.C:
			return r.publishError(&events[i].Record, f.Msg().Subject, from,
				fmt.Errorf("%w after %v (Config.AckTimeout)", jetstream.ErrAsyncPublishTimeout, r.cfg.AckTimeout))
		case <-ctx.Done():
			return r.publishError(&events[i].Record, f.Msg().Subject, from, ctx.Err())
		}
	}
	cp := projection.Checkpoint{Name: r.cfg.Name, Position: to, Supersedes: from, UpdatedAt: r.cfg.Clock()}
	if err := r.cfg.Checkpoints.SaveCheckpoint(ctx, cp); err != nil {
		return fmt.Errorf("natsrelay %q: JetStream acknowledged positions %d to %d, but saving the checkpoint failed: %w; checkpoint not advanced (stays at %d), the batch will be published again and deduplicated", r.cfg.Name, from+1, to, err, from)
	}
	r.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "natsrelay: batch relayed",
		slog.String("relay", r.cfg.Name), slog.Int("events", len(events)),
		slog.Int64("from", from), slog.Int64("to", to), slog.Duration("took", r.cfg.Clock().Sub(start)))
	return nil
}

func (r *Relay) publishError(rec *flux.Record, subject string, checkpoint int64, err error) error {
	return &PublishError{
		Relay: r.cfg.Name, StreamID: rec.StreamID, StreamVersion: rec.StreamVersion, Position: rec.Position,
		EventID: rec.EventID, Subject: subject, Stream: r.cfg.Stream, Checkpoint: checkpoint, Err: err,
	}
}

// EnsureStream makes sure the stream can store the relay's events: that it
// exists, captures SubjectPrefix+".>" and keeps a duplicate window of at
// least DuplicateWindow — creating or updating it unless ExistingStream is
// set (see Config.Stream). Batches call it on their own; call it at start
// up to fail early. Errors match ErrStreamSetup.
func (r *Relay) EnsureStream(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ensureStream(ctx)
}

func (r *Relay) ensureStream(ctx context.Context) error {
	if r.streamReady {
		return nil
	}
	name, subjects, window := r.cfg.Stream, r.cfg.SubjectPrefix+".>", r.cfg.DuplicateWindow
	setupErr := func(format string, args ...any) error {
		return fmt.Errorf("%w: stream %q: "+format, append([]any{ErrStreamSetup, name}, args...)...)
	}
	for attempt := 0; ; attempt++ {
		s, err := r.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			if r.cfg.ExistingStream {
				return setupErr("does not exist; create it with subjects %q and a duplicate window of at least %v, or leave Config.ExistingStream false so that the relay creates it", subjects, window)
			}
			_, err = r.js.CreateStream(ctx, jetstream.StreamConfig{
				Name:        name,
				Description: "FluxCapacitor events relayed by natsrelay",
				Subjects:    []string{subjects},
				Duplicates:  window,
				Storage:     jetstream.FileStorage,
			})
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt == 0 {
				continue // created meanwhile by another relay: check it
			}
			if err != nil {
				return setupErr("create with subjects %q: %w", subjects, err)
			}
			r.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "natsrelay: stream created",
				slog.String("relay", r.cfg.Name), slog.String("stream", name), slog.String("subjects", subjects), slog.Duration("duplicate_window", window))
			r.streamReady = true
			return nil
		}
		if err != nil {
			return setupErr("look up: %w", err)
		}
		sc := s.CachedInfo().Config
		var changes []string
		if !coveredBy(sc.Subjects, subjects) {
			if r.cfg.ExistingStream {
				return setupErr("captures subjects %q, not %q: the relay's events would not be stored; add the subjects to the stream or change Config.SubjectPrefix", sc.Subjects, subjects)
			}
			sc.Subjects = append(sc.Subjects, subjects)
			changes = append(changes, "add subjects "+subjects)
		}
		if sc.Duplicates < window {
			if r.cfg.ExistingStream {
				return setupErr("keeps a duplicate window of %v, shorter than Config.DuplicateWindow %v: a batch published again after that would be stored twice; raise the stream's duplicate window or lower Config.DuplicateWindow", sc.Duplicates, window)
			}
			changes = append(changes, fmt.Sprintf("raise duplicate window from %v to %v", sc.Duplicates, window))
			sc.Duplicates = window
		}
		if len(changes) > 0 {
			if _, err := r.js.UpdateStream(ctx, sc); err != nil {
				return setupErr("update (%s): %w", strings.Join(changes, ", "), err)
			}
			r.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "natsrelay: stream updated",
				slog.String("relay", r.cfg.Name), slog.String("stream", name), slog.String("changes", strings.Join(changes, ", ")))
		}
		r.streamReady = true
		return nil
	}
}

func coveredBy(patterns []string, subject string) bool {
	for _, p := range patterns {
		if covers(p, subject) {
			return true
		}
	}
	return false
}

// NewRunner returns a projection.Runner with the relay added, after
// checking that cfg suits it: the runner's MaxBackoff (default 30s) plus
// AckTimeout must stay within DuplicateWindow, so that a failed batch is
// published again while JetStream still remembers its events. Add more
// projections to the runner as usual. To add the relay to a runner of your
// own instead, call runner.Add(relay) and keep that rule.
func (r *Relay) NewRunner(cfg projection.RunnerConfig) (*projection.Runner, error) {
	var errs []error
	maxBackoff := cfg.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	if maxBackoff+r.cfg.AckTimeout >= r.cfg.DuplicateWindow {
		errs = append(errs, configError("RunnerConfig.MaxBackoff %v plus Config.AckTimeout %v reaches Config.DuplicateWindow %v: a batch retried that late would be stored twice; lower MaxBackoff or raise DuplicateWindow", maxBackoff, r.cfg.AckTimeout, r.cfg.DuplicateWindow))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	runner, err := projection.NewRunner(cfg)
	if err != nil {
		return nil, err
	}
	if err := runner.Add(r); err != nil {
		return nil, err
	}
	return runner, nil
}

// Run relays the global log read through repo until ctx ends, in a runner
// of its own with default settings (see NewRunner), then returns nil.
// Failures are retried with backoff; use NewRunner to read the relay's
// status.
func (r *Relay) Run(ctx context.Context, repo *flux.Repository) error {
	runner, err := r.NewRunner(projection.RunnerConfig{Repository: repo, Checkpoints: r.cfg.Checkpoints, Logger: r.cfg.Logger})
	if err != nil {
		return err
	}
	return runner.Run(ctx)
}
