package projection

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/fluxcapacitor/flux"
)

// RunnerConfig configures a Runner. Repository is required.
type RunnerConfig struct {
	// Repository reads and decodes the global log. Required.
	Repository *flux.Repository
	// Checkpoints keeps the checkpoints of at-least-once projections.
	// Default: the repository's store, which implements CheckpointStore.
	Checkpoints CheckpointStore
	// BatchSize, PollInterval, GapWait and Undecodable configure every
	// projection's subscription (see SubscriptionOptions).
	BatchSize    int
	PollInterval time.Duration
	GapWait      time.Duration
	Undecodable  UndecodablePolicy
	// MinBackoff and MaxBackoff bound the wait before a failed projection
	// retries; it doubles after each consecutive failure and returns to
	// MinBackoff once a batch succeeds. Defaults: 100ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// Sleep waits d before a failed projection retries, or returns ctx's
	// error when ctx ends first. Default: a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives failures and skipped events. Default: discard.
	Logger *slog.Logger
	// Clock tells time for status. Default time.Now.
	Clock func() time.Time
}

// Runner runs projections, each in its own goroutine, until its context
// ends. It is safe for concurrent use.
type Runner struct {
	cfg RunnerConfig

	mu    sync.Mutex
	projs []*running
}

type running struct {
	p      Projection
	status Status
}

// Status describes one projection.
type Status struct {
	Name string
	// Position is the last global position the projection handled.
	Position int64
	// Head is the store's last position; LagEvents = Head - Position.
	Head      int64
	LagEvents int64
	// Lag is how old the oldest event not yet handled is (0 when caught up).
	Lag time.Duration
	// Latency is, for the last event handled, the time from its commit to
	// its handling. A transaction held open by a slow writer shows here.
	Latency time.Duration
	// Processed counts the events handled since the runner started.
	Processed int64
	// Running is true while the projection's goroutine follows the log.
	Running bool
	// Stopped is true when the projection stopped on an event it cannot
	// decode (StopOnUndecodable); LastError says which.
	Stopped bool
	// LastError and LastErrorAt describe the last failure; Failures counts
	// consecutive failures (0 once a batch succeeds).
	LastError   string
	LastErrorAt time.Time
	Failures    int
	// Skipped lists undecodable events skipped (SkipUndecodable), and
	// Gaps positions that never appeared.
	Skipped []Skipped
	Gaps    []int64
}

// NewRunner returns a runner with no projections.
func NewRunner(cfg RunnerConfig) (*Runner, error) {
	if cfg.Repository == nil {
		return nil, errors.New("projection: RunnerConfig.Repository is nil")
	}
	if cfg.Checkpoints == nil {
		cs, ok := cfg.Repository.Store().(CheckpointStore)
		if !ok {
			return nil, fmt.Errorf("projection: store %T keeps no checkpoints; set RunnerConfig.Checkpoints", cfg.Repository.Store())
		}
		cfg.Checkpoints = cs
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	return &Runner{cfg: cfg}, nil
}

// Add registers a projection. Names must be unique; a projection must be
// a Handler or a BatchHandler.
func (r *Runner) Add(p Projection) error {
	switch p.(type) {
	case Handler, BatchHandler:
	default:
		return fmt.Errorf("projection %q: %T is neither a Handler nor a BatchHandler", p.Name(), p)
	}
	if p.Name() == "" {
		return errors.New("projection: name is empty")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rp := range r.projs {
		if rp.p.Name() == p.Name() {
			return fmt.Errorf("projection %q added twice", p.Name())
		}
	}
	r.projs = append(r.projs, &running{p: p, status: Status{Name: p.Name()}})
	return nil
}

func (r *Runner) find(name string) (*running, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rp := range r.projs {
		if rp.p.Name() == name {
			return rp, nil
		}
	}
	return nil, fmt.Errorf("projection %q is not registered with the runner", name)
}

// Run follows the log with every projection until ctx ends, then returns
// nil. A failing projection backs off and retries without stopping the
// others; one that stops on an undecodable event stays stopped.
func (r *Runner) Run(ctx context.Context) error {
	r.mu.Lock()
	projs := append([]*running(nil), r.projs...)
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, rp := range projs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.loop(ctx, rp)
		}()
	}
	wg.Wait()
	return nil
}

func (r *Runner) update(rp *running, fn func(s *Status)) {
	r.mu.Lock()
	fn(&rp.status)
	r.mu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// loop follows the log with one projection until ctx ends. A failure
// backs off (MinBackoff, doubling up to MaxBackoff, back to MinBackoff
// after a batch succeeds). Losing a race to another runner of the same
// projection (ErrCheckpointMoved) is no failure: the loop reloads the
// checkpoint and goes on from it at once. Only when it loses again at the
// position it lost at before — the checkpoint it reloads does not move, so
// it is not another runner's progress — does it count as a failure.
func (r *Runner) loop(ctx context.Context, rp *running) {
	r.update(rp, func(s *Status) { s.Running, s.Stopped = true, false })
	defer r.update(rp, func(s *Status) { s.Running = false })
	backoff := r.cfg.MinBackoff
	lostAt := int64(-1)
	for {
		pos, err := r.follow(ctx, rp, SubscriptionOptions{}, func(Batch) { backoff, lostAt = r.cfg.MinBackoff, -1 })
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrCheckpointMoved) && pos != lostAt {
			lostAt = pos
			r.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "projection: another runner moved the checkpoint; going on from it",
				slog.String("projection", rp.p.Name()), slog.Int64("position", pos), slog.String("error", err.Error()))
			continue
		}
		lostAt = -1
		now := r.cfg.Clock()
		stop := Undecodable(err) && r.cfg.Undecodable == StopOnUndecodable
		r.update(rp, func(s *Status) {
			s.LastError, s.LastErrorAt, s.Stopped = err.Error(), now, stop
			s.Failures++
			if stop {
				s.Running = false // in the same update: no reader sees stopped and running
			}
		})
		if stop {
			r.cfg.Logger.LogAttrs(ctx, slog.LevelError, "projection stopped on an event it cannot decode",
				slog.String("projection", rp.p.Name()), slog.String("error", err.Error()))
			return
		}
		r.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projection failed; retrying",
			slog.String("projection", rp.p.Name()), slog.String("error", err.Error()), slog.Duration("backoff", backoff))
		if r.cfg.Sleep(ctx, backoff) != nil || ctx.Err() != nil {
			return
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

func (r *Runner) checkpoint(ctx context.Context, p Projection) (Checkpoint, error) {
	if bh, ok := p.(BatchHandler); ok {
		return bh.Checkpoint(ctx)
	}
	return r.cfg.Checkpoints.LoadCheckpoint(ctx, p.Name())
}

// follow applies batches from the projection's checkpoint until an error,
// which it returns with the last position it knew the checkpoint at. opts
// may set UpTo (replays); progress, if set, is told after each batch.
//
// Before each read, the subscription looks at the stored checkpoint (one
// lookup by name): when another runner of the projection has moved it
// ahead, it skips there instead of reading and decoding events already
// handled; when it is found behind (a reset), follow returns a
// *CheckpointBehindError, and the caller reloads it.
func (r *Runner) follow(ctx context.Context, rp *running, opts SubscriptionOptions, progress func(Batch)) (int64, error) {
	p := rp.p
	cp, err := r.checkpoint(ctx, p)
	if err != nil {
		return -1, fmt.Errorf("projection %q: load checkpoint: %w", p.Name(), err)
	}
	opts.From, opts.Filter = cp.Position, p.Filter()
	opts.resume = func(ctx context.Context, pos int64) (int64, error) {
		cp, err := r.checkpoint(ctx, p)
		switch {
		case err != nil:
			return pos, fmt.Errorf("projection %q: load checkpoint: %w", p.Name(), err)
		case cp.Position < pos:
			return pos, &CheckpointBehindError{Name: p.Name(), Supersedes: pos, Position: pos, Stored: cp.Position}
		}
		return cp.Position, nil
	}
	if rp, ok := p.(RawProjection); ok && rp.RawRecords() {
		opts.Raw = true
	}
	opts.BatchSize, opts.PollInterval, opts.GapWait, opts.Undecodable = r.cfg.BatchSize, r.cfg.PollInterval, r.cfg.GapWait, r.cfg.Undecodable
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub, err := Subscribe(sctx, r.cfg.Repository, opts)
	if err != nil {
		return cp.Position, err
	}
	r.update(rp, func(s *Status) { s.Position = cp.Position })
	for {
		b, err := sub.Next(ctx)
		if err != nil {
			return sub.Position(), err
		}
		if err := r.apply(ctx, p, b); err != nil {
			return b.From, err
		}
		now := r.cfg.Clock()
		for _, sk := range b.Skipped {
			r.cfg.Logger.LogAttrs(ctx, slog.LevelError, "projection skipped an event it cannot decode",
				slog.String("projection", p.Name()), slog.Int64("position", sk.Position), slog.String("stream", sk.StreamID),
				slog.Int64("version", sk.StreamVersion), slog.String("event", sk.EventName), slog.String("error", sk.Error))
		}
		r.update(rp, func(s *Status) {
			s.Position = b.To
			s.Processed += int64(len(b.Events))
			if n := len(b.Events); n > 0 {
				s.Latency = now.Sub(b.Events[n-1].OccurredAt)
			}
			s.Skipped = append(s.Skipped, b.Skipped...)
			s.Gaps = append(s.Gaps, b.Gaps...)
			s.Failures = 0
		})
		if progress != nil {
			progress(b)
		}
	}
}

func (r *Runner) apply(ctx context.Context, p Projection, b Batch) (err error) {
	if obs := r.cfg.Repository.Observer(); obs != nil && len(b.Events) > 0 {
		links := make([]map[string]string, len(b.Events))
		for i, e := range b.Events {
			links[i] = e.Metadata.Extra
		}
		var end func(flux.Outcome)
		ctx, end = obs.Start(ctx, flux.Operation{Kind: flux.OpProjectionBatch, Name: p.Name(), Events: len(b.Events), Links: links})
		defer func() { end(flux.Outcome{Err: err, Position: b.To}) }()
	}
	switch p := p.(type) {
	case BatchHandler:
		return p.ApplyBatch(ctx, b.Events, b.From, b.To)
	case Handler:
		for _, e := range b.Events {
			if err := p.Handle(ctx, e); err != nil {
				return fmt.Errorf("projection %q: event %s at position %d: %w", p.Name(), e.Name, e.Position, err)
			}
		}
		if b.To == b.From {
			return nil
		}
		return r.cfg.Checkpoints.SaveCheckpoint(ctx, Checkpoint{Name: p.Name(), Position: b.To, Supersedes: b.From, UpdatedAt: r.cfg.Clock()})
	}
	return fmt.Errorf("projection %q: %T is neither a Handler nor a BatchHandler", p.Name(), p)
}

// Status returns every projection's status, with the lag against the
// store's current head.
func (r *Runner) Status(ctx context.Context) ([]Status, error) {
	var head int64
	if in, ok := r.cfg.Repository.Store().(flux.Inspector); ok {
		var err error
		if head, err = in.Head(ctx); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	out := make([]Status, len(r.projs))
	for i, rp := range r.projs {
		out[i] = rp.status
		out[i].Skipped = append([]Skipped(nil), rp.status.Skipped...)
		out[i].Gaps = append([]int64(nil), rp.status.Gaps...)
	}
	r.mu.Unlock()
	now := r.cfg.Clock()
	for i := range out {
		s := &out[i]
		if !s.Running && s.Position == 0 {
			// Not started in this process: report the stored checkpoint.
			rp, err := r.find(s.Name)
			if err == nil {
				if cp, err := r.checkpoint(ctx, rp.p); err == nil {
					s.Position = cp.Position
				}
			}
		}
		s.Head = head
		s.LagEvents = max(head-s.Position, 0)
		if s.LagEvents > 0 {
			for rec, err := range r.cfg.Repository.Store().ReadAll(ctx, flux.ReadAllOptions{After: s.Position, Limit: 1}) {
				if err == nil {
					s.Lag = max(now.Sub(rec.OccurredAt), 0)
				}
			}
		}
	}
	return out, nil
}
