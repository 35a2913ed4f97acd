// Package natsrelay forwards FluxCapacitor's global log to a NATS
// JetStream stream, deduplicated by event ID.
//
// A Relay is a projection.BatchHandler: it runs in a projection.Runner
// beside the application's other projections, which feeds it the log in
// commit order from its checkpoint, retries a failed batch after a backoff,
// and reports its position, lag and last error in Status.
//
//	nc, _ := nats.Connect(url, natsrelay.ConnOptions()...)
//	relay, _ := natsrelay.New(natsrelay.Config{Conn: nc, Checkpoints: store})
//	runner, _ := relay.NewRunner(projection.RunnerConfig{Repository: repo})
//	err := runner.Run(ctx)
//
// # Delivery guarantees
//
// For each batch the relay publishes every event asynchronously with the
// header Nats-Msg-Id set to the event ID, waits until JetStream has
// acknowledged every one of them, and only then saves its checkpoint. If
// any publish is refused, answered with an error, not acknowledged within
// Config.AckTimeout or lost with the connection, the batch fails with a
// *PublishError and the checkpoint stays where it was: the relay never
// moves past an event JetStream did not acknowledge. The runner then
// publishes the batch again.
//
// Delivery to JetStream is therefore at-least-once, and exactly-once
// within the stream's duplicate window: JetStream drops a message whose
// Nats-Msg-Id it stored less than the window ago, so the events of a failed
// batch that did reach the stream are not stored again. The window
// (Config.DuplicateWindow, default 2 minutes) must exceed the time until a
// failed batch is published again — the runner's MaxBackoff plus
// AckTimeout; Relay.NewRunner checks this. An event stored twice is
// possible only when it is published again later than that: after an
// outage longer than the window (the events of the batch in flight when it
// began), or when the relay's checkpoint is reset. Consumers that must not
// see an event twice deduplicate by Nats-Msg-Id.
//
// A failure that does not go away by itself stops the relay at the event
// concerned, retried with backoff and shown in the runner's Status: an
// event larger than the server's max_payload (1 MB by default, while flux
// accepts up to 4 MiB), for example, needs max_payload raised.
//
// What JetStream does with a stored message afterwards (retention,
// replicas, consumers' acknowledgements) is the stream's configuration.
//
// # Order
//
// Events reach the stream in global order when the connection keeps no
// reconnect buffer (nats.ReconnectBufSize(-1), part of ConnOptions): every
// publish during an outage then fails at once, instead of being sent after
// it ahead of the earlier events of its batch that were lost and are
// published again. New refuses a buffering connection unless
// Config.Unordered is set. The client's own retries of a publish that
// found no stream are turned off for the same reason: the whole batch is
// retried instead. One case remains: an event the server refuses on its own
// (a stream limit, say) while it stores the ones after it ends up behind
// them once the batch is published again.
//
// # Subjects
//
// Each event is published on
//
//	<prefix>.<aggregate type>.<event name>
//
// with the prefix Config.SubjectPrefix (default "flux"; several tokens are
// allowed) and the aggregate type and event name as stored. Each name
// becomes one subject token (see Token): the characters a token may not
// hold — '.', '*', '>', white space and control characters, and invalid
// UTF-8 — are replaced by '_', and an empty name becomes "_". So
// "Budget Envelope" / "credited.v2" travels on
// flux.Budget_Envelope.credited_v2. The mapping is not reversible; the
// exact names are in the headers. The stream captures <prefix>.>.
//
// The event name is the one the payload was stored with; an event renamed
// since keeps its old name and payload shape, and its version header tells
// the consumer which upcasting it needs.
//
// # Payload and headers
//
// The message data is the event's payload exactly as stored
// (flux.Record.Payload, JSON by default). Fields marked as personal data
// stay encrypted, bound to their event: they never reach the broker in
// clear, and crypto-shredding a data subject makes them unreadable there
// too. A consumer holding the keys decodes a message with
// flux.Repository.Decode.
//
// The headers (constants Header*) are:
//
//	Nats-Msg-Id           event ID (JetStream deduplication)
//	Flux-Event-Name       event name, as stored
//	Flux-Event-Version    event schema version, as stored
//	Flux-Aggregate-Type   aggregate type
//	Flux-Stream-Id        aggregate (stream) ID
//	Flux-Stream-Version   version of the event in its stream
//	Flux-Position         position in the global log
//	Flux-Occurred-At      when it was saved, UTC, RFC 3339 with nanoseconds
//	Flux-Request-Id       request ID (left out when empty)
//	Flux-Correlation-Id   correlation ID (left out when empty)
//	Flux-Causation-Id     causation ID (left out when empty)
//	Flux-Meta-<key>       each flux.Metadata.Extra key, such as traceparent
//
// Extra keys keep their case; bytes a header name may not hold are written
// %XX (see MetadataHeader), so "tenant id" travels as Flux-Meta-tenant%20id.
// NATS trims spaces around header values and turns CR and LF into spaces.
//
// # Configuration
//
// Config documents every field and its default. The essentials:
//
//   - JetStream or Conn: the broker. A relay made from Conn uses a JetStream
//     handle with an async-publish timeout of AckTimeout.
//   - Checkpoints: where the relay keeps its position; the event store.
//   - Name (default "natsrelay"): projection and checkpoint name.
//   - Filter: event names and aggregate types to relay; default all.
//   - Stream (default "FLUX"): created when missing with file storage,
//     subjects <prefix>.> and the duplicate window; an existing stream gets
//     the subjects and window added when they fall short, and keeps the
//     rest of its settings. With ExistingStream the relay changes nothing
//     and fails while the stream does not fit.
//   - DuplicateWindow (default 2 minutes) and AckTimeout (default 10s).
//   - Logger (default discard) and Clock (default time.Now).
//
// New validates the configuration and reports every problem at once,
// matching ErrInvalidConfig. It does no I/O; the stream is checked by the
// first batch, or earlier by EnsureStream, and checked again after every
// failure (so a deleted stream is created again, unless ExistingStream).
//
// The relay is a projection.RawProjection: the runner hands it events as
// stored, without decoding or decrypting them, so every event is relayed —
// also one the application can no longer decode. Run one relay per name;
// relays to several brokers need distinct names.
package natsrelay
