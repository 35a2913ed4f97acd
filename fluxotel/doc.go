// Package fluxotel reports what FluxCapacitor does as OpenTelemetry traces
// and metrics. It implements flux.Observer: build one with New (or
// NewPrometheus, for a scrape endpoint) and set it in flux.Config.Observer;
// the repository, the command buses over it and the projection runners
// over it then report to it. Query buses report once given it with
// flux.QueryBusConfig.Observer, and projection lag once a runner is passed to
// ObserveRunner.
//
//	obs, err := fluxotel.New(fluxotel.Config{}) // the global providers
//	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg, Observer: obs})
//	err = obs.ObserveRunner(runner)
//
// # Personal data
//
// Spans and measurements carry IDs (stream, correlation), registered
// names (aggregate types, events, projections), Go type names of commands
// and queries, counts and outcomes: never an event's, command's or query's
// contents, which the core does not pass to observers. Error messages are
// withheld by default (see Config.RecordErrorMessages), because an
// application's error may quote what a person typed. If your stream IDs
// themselves reveal people (e-mail addresses as IDs), drop them with
// Config.AttributeFilter and ExceptKeys(StreamIDKey).
//
// # Spans
//
// One span per operation, started as a child of the span in the context,
// so that they nest: flux.command holds the loads of its handler and the
// flux.save of its unit of work, which holds flux.append; flux.query holds
// the loads of its handler. Every span of a failed operation has status
// Error and an "exception" event (exception.type, exception.message); a
// concurrency conflict also sets flux.conflict=true.
//
//	flux.command           flux.command (Go type), flux.correlation_id
//	flux.query             flux.query (Go type), flux.correlation_id
//	flux.save              flux.aggregate_type and flux.stream_id (a save of one
//	                       aggregate), flux.event_count, flux.correlation_id,
//	                       flux.snapshots_written (once stored)
//	flux.append            flux.event_count, flux.correlation_id
//	flux.load              flux.aggregate_type, flux.stream_id, flux.correlation_id,
//	                       flux.events_replayed and flux.snapshot_used (on success)
//	flux.projection.batch  (kind consumer) flux.projection, flux.event_count,
//	                       flux.position; links to the writers of its events
//	flux.relay.publish     (kind producer) flux.relay, flux.event_count,
//	                       flux.position; links to the writers of its events.
//	                       Set natsrelay.Config.Observer to see it; it is a child
//	                       of the relay's flux.projection.batch span
//
// Point events become span events on the span in the context (a load, or
// a save's encryption), and are counted even without one:
//
//	flux.upcast                   flux.event, flux.from_version, flux.to_version
//	flux.personal_data_failure    flux.event, flux.op (encrypt|decrypt), flux.reason
//
// # Trace context in events
//
// TraceMetadata writes the current span context with Config.Propagator
// (by default W3C traceparent and tracestate) into the metadata of every
// event a save stores; the span current there is the flux.save span, in
// the trace of the command that saved. A projection batch extracts those
// span contexts from its events' metadata and links to each distinct one
// (at most Config.MaxLinks): the batch span of a projection, or of the
// NATS relay, leads back to the command that wrote the events, though it
// runs later, elsewhere, in a trace of its own (its parent is whatever
// span the runner's context holds, usually none).
//
// # Metrics
//
// Durations are histograms in seconds (buckets 100µs to 10s), counts per
// operation histograms of events. Attribute flux.outcome is "ok", "error"
// or "conflict".
//
//	flux.command.duration            s          flux.command, flux.outcome
//	flux.query.duration              s          flux.query, flux.outcome
//	flux.save.duration               s          flux.aggregate_type (a save of one), flux.outcome
//	flux.append.duration             s          flux.outcome
//	flux.append.events               {event}    events per successful append
//	flux.load.duration               s          flux.aggregate_type, flux.outcome
//	flux.load.events_replayed        {event}    flux.aggregate_type; events applied after
//	                                            the snapshot, per successful load
//	flux.loads                       {load}     flux.aggregate_type, flux.snapshot_used
//	                                            (true|false); successful loads. The snapshot
//	                                            hit ratio is flux.loads{flux.snapshot_used=true}
//	                                            / flux.loads
//	flux.snapshots.written           {snapshot} flux.aggregate_type (a save of one)
//	flux.conflicts                   {conflict} appends refused by a concurrency conflict
//	flux.upcasts                     {event}    flux.event; reads of stored events through
//	                                            upcasters (each read counts)
//	flux.personal_data.failures      {failure}  flux.op (encrypt|decrypt), flux.reason
//	                                            ("tampered", "wrong_secret", "forgotten", ...)
//	flux.projection.batch.duration   s          flux.projection, flux.outcome
//	flux.projection.events           {event}    flux.projection; events of successful batches
//	flux.projection.errors           {error}    flux.projection; failed batches
//	flux.relay.publish.duration      s          flux.relay, flux.outcome; publish, acknowledgements
//	                                            and checkpoint of one batch
//	flux.relay.events                {event}    flux.relay; events published and acknowledged
//	flux.relay.errors                {error}    flux.relay; failed batches (the runner retries)
//
// Gauges, read from (*projection.Runner).Status at each collection for the
// runners passed to ObserveRunner:
//
//	flux.projection.lag.events       {event}    flux.projection; events not handled yet
//	flux.projection.lag              s          flux.projection; age of the oldest of them
//	flux.projection.failures         {failure}  flux.projection; consecutive failures
//
// The NATS relay runs as a projection in a runner: its lag is the
// projection lag of the relay's name (flux.projection="<relay name>"), so
// alert on that, as on any projection's; flux.relay.errors counts its
// failed publishes.
//
// With NewPrometheus the names follow Prometheus conventions: dots become
// underscores, units and counter suffixes are added
// (flux_append_duration_seconds, flux_loads_total, flux_projection_lag_seconds),
// and attributes become labels (flux_projection).
package fluxotel
