package projection

import (
	"context"
	"errors"
)

// ErrCheckpointMoved is matched by the errors of TxStore.ProjectTx and
// CheckpointStore.SaveCheckpoint when the stored checkpoint is no longer
// where the caller read it: another runner of the same projection advanced
// it. Nothing was committed; reload and go on. The error is a
// *CheckpointBehindError where the backend tells where the checkpoint is.
var ErrCheckpointMoved = errors.New("projection: checkpoint moved by another runner")

// TxStore is implemented by backends whose projections may keep their read
// model in the store's own database: the read-model change and the
// checkpoint commit in one transaction, so every event is applied exactly
// once. Tx is the backend's transaction type (*sql.Tx, pgx.Tx).
type TxStore[Tx any] interface {
	// ProjectTx runs fn in a transaction and, in the same transaction,
	// moves the checkpoint cp.Name from position from to cp.Position. If
	// the stored checkpoint is not at from (0 when there is none), fn does
	// not run, nothing is committed and the error is a
	// *CheckpointBehindError (it matches ErrCheckpointMoved). If fn fails,
	// nothing is committed and its error is returned.
	ProjectTx(ctx context.Context, from int64, cp Checkpoint, fn func(ctx context.Context, tx Tx) error) error
}

// Waker is implemented by stores that can wake a following subscription as
// soon as an append commits: PostgreSQL through LISTEN/NOTIFY, memstore and
// sqlitestore in-process. A wake-up is only a hint — subscriptions keep
// polling — so implementations may coalesce or drop signals.
type Waker interface {
	// Wake returns a channel that receives a value after appends commit,
	// until ctx is done. Several appends may produce one value.
	Wake(ctx context.Context) (<-chan struct{}, error)
}
