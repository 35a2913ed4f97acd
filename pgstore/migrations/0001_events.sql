-- The events table, after the PHP library's layout (global id, aggregate
-- id, aggregate type, event name, event version, payload, occurred on,
-- request id, version) plus the event ID, correlation and causation IDs and
-- the free-form metadata. {{schema}} is replaced by the quoted schema name.
--
-- id is the global position. It has no default: the append transaction
-- assigns it from log_head (see 0003), which is what keeps positions dense
-- and in commit order.
--
-- Stream IDs, types and names compare byte-wise (COLLATE "C"), like Go
-- strings and the other backends, so ListStreams pages the same everywhere.
CREATE TABLE {{schema}}.events (
	id             BIGINT       NOT NULL,
	event_id       UUID         NOT NULL,
	aggregate_id   VARCHAR(255) COLLATE "C" NOT NULL,
	aggregate_type VARCHAR(255) COLLATE "C" NOT NULL,
	event_name     VARCHAR(255) COLLATE "C" NOT NULL,
	event_version  INTEGER      NOT NULL DEFAULT 1,
	payload        JSONB        NOT NULL,
	-- The payload exactly as given, only when JSONB cannot hold it (a \u0000
	-- escape or an unpaired surrogate); payload then holds a copy with
	-- U+FFFD in their place. NULL for every other event.
	payload_json   JSON         NULL,
	-- Free-form metadata keys (flux.Metadata.Extra); NULL when there are none.
	metadata       JSONB        NULL,
	occurred_on    TIMESTAMPTZ  NOT NULL,
	request_id     TEXT         NOT NULL,
	correlation_id TEXT         NOT NULL DEFAULT '',
	causation_id   TEXT         NOT NULL DEFAULT '',
	version        BIGINT       NOT NULL,
	CONSTRAINT events_pkey PRIMARY KEY (id),
	CONSTRAINT unique_event_id UNIQUE (event_id),
	CONSTRAINT unique_aggregate_version UNIQUE (aggregate_id, version),
	CONSTRAINT events_version_positive CHECK (version >= 1)
);
-- The PHP layout's idx_events_aggregate_id (aggregate_id) is left out on
-- purpose: unique_aggregate_version serves every lookup by aggregate_id (its
-- leading column), and with a second index on the column PostgreSQL's
-- planner, working from stale statistics (a new or fast-growing table, or
-- one long stream among many short ones), picks the single-column index for
-- "the stream's newest version" and "the stream in version order", reading
-- and sorting the whole stream on every append and every page of a read.
CREATE INDEX idx_events_occurred_on ON {{schema}}.events (occurred_on);
CREATE INDEX idx_events_correlation_id ON {{schema}}.events (correlation_id);
