package natsrelay

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is; the typed errors below carry
// the details.
var (
	// ErrInvalidConfig is matched by every problem New finds in a Config.
	// New returns all of them at once, joined.
	ErrInvalidConfig = errors.New("natsrelay: invalid config")

	// ErrNotAcknowledged is matched by a *PublishError: JetStream did not
	// acknowledge an event (publish refused, negative ack, timeout, lost
	// connection). The batch's checkpoint was not advanced; the runner
	// retries the batch and JetStream drops the events it already stored
	// (same Nats-Msg-Id within the duplicate window).
	ErrNotAcknowledged = errors.New("natsrelay: event not acknowledged by JetStream")

	// ErrStreamSetup is matched by errors of EnsureStream (and of a batch
	// that could not make sure of the stream first): the stream is missing
	// and may not be created, does not capture the relay's subjects, keeps a
	// too short duplicate window, or the JetStream API failed.
	ErrStreamSetup = errors.New("natsrelay: stream not usable")
)

// PublishError reports the first event of a batch that JetStream did not
// acknowledge. Nothing of the batch was checkpointed: the checkpoint stays
// at Checkpoint, and the events of the batch are published again when the
// runner retries it. It matches ErrNotAcknowledged and wraps the cause
// (for example jetstream.ErrNoStreamResponse, jetstream.ErrAsyncPublishTimeout
// or nats.ErrDisconnected).
type PublishError struct {
	// Relay is the relay's projection (and checkpoint) name.
	Relay string
	// StreamID, StreamVersion, Position and EventID identify the event.
	StreamID      string
	StreamVersion int64
	Position      int64
	EventID       string
	// Subject is the NATS subject the event was published to, and Stream
	// the JetStream stream expected to store it.
	Subject string
	Stream  string
	// Checkpoint is the position the relay's checkpoint stays at.
	Checkpoint int64
	// Err is the cause.
	Err error
}

func (e *PublishError) Error() string {
	return fmt.Sprintf("natsrelay %q: event %s (stream %q version %d, position %d) on subject %q not acknowledged by JetStream stream %q: %v; checkpoint not advanced (stays at %d), the batch will be published again",
		e.Relay, e.EventID, e.StreamID, e.StreamVersion, e.Position, e.Subject, e.Stream, e.Err, e.Checkpoint)
}

// Unwrap returns the cause.
func (e *PublishError) Unwrap() error { return e.Err }

// Is matches ErrNotAcknowledged.
func (e *PublishError) Is(target error) bool { return target == ErrNotAcknowledged }

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
}
