-- Snapshots in the PHP library's aggregate_snapshots layout plus the
-- snapshot schema version; data keys in its encryption_keys layout;
-- tombstones of forgotten subjects; idempotency keys; projection
-- checkpoints. Times are DATETIME(6) holding UTC.
CREATE TABLE IF NOT EXISTS aggregate_snapshots (
    id             BIGINT       NOT NULL AUTO_INCREMENT,
    aggregate_id   VARCHAR(255) NOT NULL,
    aggregate_type VARCHAR(255) NOT NULL,
    version        BIGINT       NOT NULL,
    schema_version INT          NOT NULL DEFAULT 1,
    data           JSON         NOT NULL,                 -- personal data encrypted
    created_at     DATETIME(6)  NOT NULL,                 -- occurred-at of the snapshot's last event
    PRIMARY KEY (id),
    UNIQUE KEY unique_aggregate_version (aggregate_id, version),
    INDEX idx_aggregate_id (aggregate_id),
    INDEX idx_aggregate_version (aggregate_id, version DESC)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{collate}};

CREATE TABLE IF NOT EXISTS encryption_keys (
    id             BIGINT       NOT NULL AUTO_INCREMENT,
    user_id        VARCHAR(255) NOT NULL,
    encryption_key TEXT         NOT NULL,                 -- wrapped by the key-encryption key, never in clear
    created_at     DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at     DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    UNIQUE KEY unique_user_id (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{collate}};

CREATE TABLE IF NOT EXISTS forgotten_subjects (
    user_id      VARCHAR(255) NOT NULL,
    forgotten_at DATETIME(6)  NOT NULL,
    forgotten_by TEXT         NOT NULL,
    reason       TEXT         NOT NULL,
    PRIMARY KEY (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{collate}};

CREATE TABLE IF NOT EXISTS idempotency_keys (
    idempotency_key VARCHAR(255) NOT NULL,
    result          LONGBLOB     NOT NULL,
    created_at      DATETIME(6)  NOT NULL,
    PRIMARY KEY (idempotency_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{collate}};

CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name       VARCHAR(255) NOT NULL,
    position   BIGINT       NOT NULL,
    updated_at DATETIME(6)  NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{collate}};
