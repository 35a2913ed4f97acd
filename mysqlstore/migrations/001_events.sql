-- The events table in the PHP library's layout (id, aggregate_id,
-- aggregate_type, event_name, event_version, payload, occurred_on,
-- request_id, version and its four indexes), plus what flux records for
-- every event: the event ID, correlation and causation IDs and free-form
-- metadata. occurred_on is DATETIME(6) holding UTC (the PHP library's
-- TIMESTAMP converts through the session time zone and ends in 2038).
-- Identifier columns use a binary, no-pad collation ({{collate}}) so that
-- "acc", "Acc" and "acc " are three different streams.
CREATE TABLE IF NOT EXISTS events (
    id             BIGINT       NOT NULL AUTO_INCREMENT,  -- global position, allocated from flux_log_head
    event_id       CHAR(36)     CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    aggregate_id   VARCHAR(255) NOT NULL,
    aggregate_type VARCHAR(255) NOT NULL,
    event_name     VARCHAR(255) NOT NULL,
    event_version  INT          NOT NULL DEFAULT 1,
    payload        JSON         NOT NULL,
    metadata       JSON         NULL,                     -- extra keys; NULL when none
    occurred_on    DATETIME(6)  NOT NULL,                 -- UTC
    request_id     VARCHAR(255) NOT NULL,
    correlation_id VARCHAR(255) NOT NULL DEFAULT '',
    causation_id   VARCHAR(255) NOT NULL DEFAULT '',
    version        BIGINT       NOT NULL,                 -- stream version, from 1
    PRIMARY KEY (id),
    UNIQUE KEY unique_aggregate_version (aggregate_id, version),
    UNIQUE KEY unique_event_id (event_id),
    INDEX idx_aggregate_id (aggregate_id),
    INDEX idx_aggregate_version (aggregate_id, version),
    INDEX idx_occurred_on (occurred_on),
    INDEX idx_correlation_id (correlation_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={{collate}};

-- The log head: one row holding the last position handed out. Every append
-- locks it first (UPDATE ... WHERE id = 1), which serialises appends and
-- makes positions follow commit order without holes; see Store.Append.
CREATE TABLE IF NOT EXISTS flux_log_head (
    id       TINYINT NOT NULL,
    position BIGINT  NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT flux_log_head_one_row CHECK (id = 1)
) ENGINE=InnoDB;

-- Start after any events already present (a table created by the PHP
-- library, whose AUTO_INCREMENT ids may have holes: density holds from here).
INSERT INTO flux_log_head (id, position)
    SELECT 1, COALESCE(MAX(id), 0) FROM events
    ON DUPLICATE KEY UPDATE position = flux_log_head.position;
