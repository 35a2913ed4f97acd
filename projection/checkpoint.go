package projection

import (
	"context"
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
}

// CheckpointStore keeps checkpoints per projection name in the store's
// database. Every backend implements it; storetest holds its conformance
// cases.
type CheckpointStore interface {
	// LoadCheckpoint returns the named checkpoint; a projection that never
	// saved one is at position 0.
	LoadCheckpoint(ctx context.Context, name string) (Checkpoint, error)
	// SaveCheckpoint creates or replaces the checkpoint.
	SaveCheckpoint(ctx context.Context, cp Checkpoint) error
	// ListCheckpoints returns every checkpoint, by name.
	ListCheckpoints(ctx context.Context) ([]Checkpoint, error)
	// DeleteCheckpoint removes the named checkpoint (a reset: the
	// projection starts again from position 0).
	DeleteCheckpoint(ctx context.Context, name string) error
}
