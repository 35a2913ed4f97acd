package projection

import (
	"context"
	"fmt"
	"time"
)

// Checkpoint is how far a projection has read the global log.
type Checkpoint struct {
	// Name identifies the projection.
	Name string
	// Position is the last global position the projection has handled.
	Position int64
	// UpdatedAt is when the checkpoint was last saved.
	UpdatedAt time.Time
	// Supersedes is, for SaveCheckpoint, the stored position this save
	// replaces: the position the writer read (0 when there was no
	// checkpoint). The save succeeds only if the checkpoint is still
	// stored there; otherwise nothing is written and the error is a
	// *CheckpointBehindError. Two runners of one projection therefore
	// cannot move its checkpoint backwards, and a deliberate move back (a
	// reset) names the position it replaces. AnyPosition saves
	// unconditionally. Loaded checkpoints leave it 0.
	Supersedes int64 `json:",omitempty"`
}

// AnyPosition, as Checkpoint.Supersedes, makes SaveCheckpoint create or
// replace the checkpoint wherever it is stored: for tools that set a
// checkpoint by hand while no runner of the projection runs.
const AnyPosition int64 = -1

// CheckpointBehindError is returned when a checkpoint write finds the
// checkpoint stored elsewhere than where the writer read it: another
// runner of the same projection moved it (or a reset did). Nothing was
// written. It matches ErrCheckpointMoved. A runner reloads the checkpoint
// and goes on from Stored.
type CheckpointBehindError struct {
	// Name is the projection's.
	Name string
	// Supersedes is where the writer read the checkpoint, Position where
	// it meant to move it.
	Supersedes, Position int64
	// Stored is where the checkpoint was found (0 when there is none).
	Stored int64
}

func (e *CheckpointBehindError) Error() string {
	return fmt.Sprintf("projection %q: checkpoint not moved from %d to %d: it is stored at %d (another runner of the projection moved it); nothing was written, reload the checkpoint and go on from there",
		e.Name, e.Supersedes, e.Position, e.Stored)
}

// Is makes errors.Is(err, ErrCheckpointMoved) hold.
func (e *CheckpointBehindError) Is(target error) bool { return target == ErrCheckpointMoved }

// CheckpointStore keeps checkpoints per projection name in the store's
// database. Every backend implements it; storetest holds its conformance
// cases.
type CheckpointStore interface {
	// LoadCheckpoint returns the named checkpoint; a projection that never
	// saved one is at position 0.
	LoadCheckpoint(ctx context.Context, name string) (Checkpoint, error)
	// SaveCheckpoint moves the checkpoint from cp.Supersedes to
	// cp.Position, creating it if needed, atomically: if it is not stored
	// at cp.Supersedes (0 when there is none), nothing is written and the
	// error is a *CheckpointBehindError. With Supersedes AnyPosition it
	// creates or replaces the checkpoint.
	SaveCheckpoint(ctx context.Context, cp Checkpoint) error
	// ListCheckpoints returns every checkpoint, by name.
	ListCheckpoints(ctx context.Context) ([]Checkpoint, error)
	// DeleteCheckpoint removes the named checkpoint (a reset: the
	// projection starts again from position 0).
	DeleteCheckpoint(ctx context.Context, name string) error
}
