-- Snapshots (the PHP library's aggregate_snapshots plus the snapshot schema
-- version), data keys (its encryption_keys), tombstones of forgotten
-- subjects, idempotency keys and projection checkpoints.
CREATE TABLE {{schema}}.aggregate_snapshots (
	id             BIGINT GENERATED ALWAYS AS IDENTITY,
	aggregate_id   VARCHAR(255) COLLATE "C" NOT NULL,
	aggregate_type VARCHAR(255) COLLATE "C" NOT NULL,
	version        BIGINT       NOT NULL,
	schema_version INTEGER      NOT NULL DEFAULT 1,
	data           JSONB        NOT NULL, -- personal data encrypted
	-- The data exactly as given when JSONB cannot hold it (see events.payload_json).
	data_json      JSON         NULL,
	created_at     TIMESTAMPTZ  NOT NULL, -- occurred-at of the snapshot's last event
	CONSTRAINT aggregate_snapshots_pkey PRIMARY KEY (id),
	CONSTRAINT unique_snapshot_aggregate_version UNIQUE (aggregate_id, version)
);
CREATE INDEX idx_snapshots_aggregate_version ON {{schema}}.aggregate_snapshots (aggregate_id, version DESC);

CREATE TABLE {{schema}}.encryption_keys (
	id             BIGINT GENERATED ALWAYS AS IDENTITY,
	user_id        TEXT COLLATE "C" NOT NULL, -- the data subject
	encryption_key TEXT         NOT NULL, -- wrapped by the key-encryption key, never in clear
	created_at     TIMESTAMPTZ  NOT NULL,
	updated_at     TIMESTAMPTZ  NOT NULL,
	CONSTRAINT encryption_keys_pkey PRIMARY KEY (id),
	CONSTRAINT unique_user_id UNIQUE (user_id)
);

CREATE TABLE {{schema}}.forgotten_subjects (
	user_id      TEXT COLLATE "C" NOT NULL,
	forgotten_at TIMESTAMPTZ  NOT NULL,
	forgotten_by TEXT         NOT NULL DEFAULT '',
	reason       TEXT         NOT NULL DEFAULT '',
	CONSTRAINT forgotten_subjects_pkey PRIMARY KEY (user_id)
);

CREATE TABLE {{schema}}.idempotency_keys (
	idempotency_key VARCHAR(255) COLLATE "C" NOT NULL,
	result          BYTEA        NOT NULL,
	created_at      TIMESTAMPTZ  NOT NULL,
	CONSTRAINT idempotency_keys_pkey PRIMARY KEY (idempotency_key)
);

CREATE TABLE {{schema}}.projection_checkpoints (
	name       TEXT COLLATE "C" NOT NULL,
	position   BIGINT      NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL,
	CONSTRAINT projection_checkpoints_pkey PRIMARY KEY (name)
);
