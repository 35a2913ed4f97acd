// Package projection builds read models (the Q of CQRS) from the global
// log: subscriptions that follow it from a checkpoint in commit order, a
// runner for several projections, and rebuilds.
//
// # Delivery
//
// A projection created with New is at-least-once: its handler runs for
// each event, and the checkpoint is saved after each batch. After a crash
// the events since the last checkpoint are handled again; deduplicate by
// Envelope.EventID where it matters. A projection created with NewTx keeps
// its read model in the event store's own database: the read-model change
// and the checkpoint commit in one transaction, so every event is applied
// exactly once.
//
// # Several runners
//
// Runners of one projection in several processes never move its
// checkpoint backwards: every checkpoint write is conditional
// (Checkpoint.Supersedes; a refused one is a *CheckpointBehindError
// matching ErrCheckpointMoved). A runner that loses a race counts no
// failure and does not back off: it reloads the checkpoint and goes on
// from it, and it looks the checkpoint up before each read so as not to
// read events another runner has handled. At-least-once handlers may see
// an event in more than one process; NewTx applies each exactly once.
//
// # Ordering and gaps
//
// Backends assign global positions in commit order and without holes (the
// storage contract, pinned by storetest), so a subscription that resumes
// after the last position it saw never skips an event, and a rolled-back
// append leaves nothing to wait for. A transaction held open by a slow
// writer delays the appends behind it; nothing is lost, and the delay shows
// in Status as delivery latency. Should a backend ever show a hole, the
// subscription waits GapWait for it to fill, then records it in Status and
// goes on — it never stalls for good.
//
// # Events that do not decode
//
// An event that cannot be decoded (unknown type, corrupt payload, failing
// upcaster, tampered personal data) stops its projection by default, with
// the error in Status: nothing is skipped silently. With SkipUndecodable
// the event is skipped, logged and listed in Status.Skipped.
package projection
