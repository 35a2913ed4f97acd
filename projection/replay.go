package projection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fluxcapacitor/flux"
)

// ReplayOptions configure a rebuild.
type ReplayOptions struct {
	// From replays the events after this position (0: the whole log).
	From int64
	// Since, when set, replays from the first event that occurred at or
	// after it (instead of From).
	Since time.Time
	// Progress, if set, is called after every batch and once at the end.
	Progress func(Progress)
}

// Progress reports a rebuild's advance.
type Progress struct {
	Projection string
	// Position is the last position replayed; Head the position the
	// rebuild runs to (the store's head when it started).
	Position, Head int64
	// Events counts the events handled so far.
	Events int64
	Done   bool
}

// Rebuild empties the projection's read model (it must implement
// Resetter), moves its checkpoint back and replays the log into it up to
// the store's current head. Readers see the read model being rebuilt; use
// RebuildSwap to keep the old one readable until the new one is complete.
// The projection must not be running meanwhile.
func (r *Runner) Rebuild(ctx context.Context, name string, opts ReplayOptions) error {
	rp, err := r.find(name)
	if err != nil {
		return err
	}
	reset, ok := rp.p.(Resetter)
	if !ok {
		return fmt.Errorf("projection %q cannot be rebuilt in place: it has no Reset (projection.OnReset)", name)
	}
	from, err := r.startPosition(ctx, opts)
	if err != nil {
		return err
	}
	cur, err := r.checkpoint(ctx, rp.p)
	if err != nil {
		return fmt.Errorf("projection %q: load checkpoint: %w", name, err)
	}
	if err := reset.Reset(ctx); err != nil {
		return fmt.Errorf("projection %q: reset: %w", name, err)
	}
	if err := r.cfg.Checkpoints.SaveCheckpoint(ctx, Checkpoint{Name: name, Position: from, Supersedes: cur.Position, UpdatedAt: r.cfg.Clock()}); err != nil {
		if errors.Is(err, ErrCheckpointMoved) {
			return fmt.Errorf("projection %q: reset checkpoint: %w; a runner of the projection is running: stop it and rebuild again", name, err)
		}
		return fmt.Errorf("projection %q: reset checkpoint: %w", name, err)
	}
	return r.replay(ctx, rp, opts)
}

// Swapper is implemented by projections that can build a fresh copy of
// their read model beside the live one and swap it in atomically — for
// SQL read models, a new table renamed over the old one in a transaction.
type Swapper interface {
	Projection
	// Shadow prepares an empty copy of the read model and returns the
	// projection that fills it, under a checkpoint name of its own. A
	// copy left by an interrupted rebuild must be discarded first.
	Shadow(ctx context.Context) (Projection, error)
	// Swap makes the copy the live read model and the shadow's checkpoint
	// the live projection's, atomically: for a transactional projection,
	// in one transaction of the store (TxStore.ProjectTx moves the
	// checkpoint and runs the swap).
	Swap(ctx context.Context, shadow Checkpoint) error
}

// RebuildSwap rebuilds a Swapper projection into a fresh copy while the
// live read model stays readable, then swaps the copy in: readers never
// see a half-built read model. The copy is replayed from opts.From (or
// opts.Since) up to the store's head when the rebuild starts; if ctx ends
// or the replay fails first, Swap is not called and the live read model
// and its checkpoint are left as they were; the partial copy stays until
// the next Shadow discards it.
//
// Whether a runner of the same projection may keep running meanwhile
// depends on the projection:
//
//   - A BatchHandler (NewTx) whose Swap moves the live checkpoint in the
//     transaction that swaps the read model may run. Unless it was at the
//     copy's position, it finds the checkpoint moved before its next batch
//     (or its next batch loses with ErrCheckpointMoved, which is no
//     failure); it reloads the checkpoint and carries on from it, into the
//     new read model, exactly once.
//   - A Handler (New) whose Swap sets the live checkpoint may run too: its
//     saves are conditional (Checkpoint.Supersedes), so it never
//     overwrites the checkpoint Swap set; it reloads it and handles the
//     events after the copy's head again, into the new read model — at
//     least once, as always. (A projection with a read model of its own
//     that Swap does not reach must not run, as for Rebuild.)
func (r *Runner) RebuildSwap(ctx context.Context, name string, opts ReplayOptions) error {
	rp, err := r.find(name)
	if err != nil {
		return err
	}
	sw, ok := rp.p.(Swapper)
	if !ok {
		return fmt.Errorf("projection %q cannot be rebuilt into a copy: it does not implement projection.Swapper", name)
	}
	from, err := r.startPosition(ctx, opts)
	if err != nil {
		return err
	}
	shadow, err := sw.Shadow(ctx)
	if err != nil {
		return fmt.Errorf("projection %q: prepare the copy: %w", name, err)
	}
	if shadow.Name() == name {
		return fmt.Errorf("projection %q: the copy must have a checkpoint name of its own", name)
	}
	left, err := r.checkpoint(ctx, shadow) // a copy's, left by an interrupted rebuild
	if err != nil {
		return fmt.Errorf("projection %q: load checkpoint: %w", shadow.Name(), err)
	}
	if err := r.cfg.Checkpoints.SaveCheckpoint(ctx, Checkpoint{Name: shadow.Name(), Position: from, Supersedes: left.Position, UpdatedAt: r.cfg.Clock()}); err != nil {
		return err
	}
	srp := &running{p: shadow, status: Status{Name: shadow.Name()}}
	if err := r.replay(ctx, srp, opts); err != nil {
		return err
	}
	cp, err := r.checkpoint(ctx, shadow)
	if err != nil {
		return err
	}
	if err := sw.Swap(ctx, cp); err != nil {
		return fmt.Errorf("projection %q: swap in the copy: %w", name, err)
	}
	return nil
}

func (r *Runner) startPosition(ctx context.Context, opts ReplayOptions) (int64, error) {
	if opts.Since.IsZero() {
		return max(opts.From, 0), nil
	}
	for rec, err := range r.cfg.Repository.Store().ReadAll(ctx, flux.ReadAllOptions{Since: opts.Since, Limit: 1}) {
		if err != nil {
			return 0, err
		}
		return rec.Position - 1, nil
	}
	in, ok := r.cfg.Repository.Store().(flux.Inspector)
	if !ok {
		return 0, errors.New("projection: the store cannot report its head")
	}
	return in.Head(ctx) // nothing since then: replay nothing
}

// replay runs rp from its checkpoint to the current head.
func (r *Runner) replay(ctx context.Context, rp *running, opts ReplayOptions) error {
	in, ok := r.cfg.Repository.Store().(flux.Inspector)
	if !ok {
		return errors.New("projection: the store cannot report its head")
	}
	head, err := in.Head(ctx)
	if err != nil {
		return err
	}
	var events int64
	report := func(pos int64, done bool) {
		if opts.Progress != nil {
			opts.Progress(Progress{Projection: rp.p.Name(), Position: pos, Head: head, Events: events, Done: done})
		}
	}
	_, err = r.follow(ctx, rp, SubscriptionOptions{UpTo: head}, func(b Batch) {
		events += int64(len(b.Events))
		report(b.To, false)
	})
	if !errors.Is(err, ErrCaughtUp) {
		return err
	}
	report(head, true)
	return nil
}
