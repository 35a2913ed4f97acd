-- The log head: one row holding the highest position handed out. Every
-- append updates it first thing in its transaction, which serialises
-- appends in commit order and keeps positions dense (see Store.Append).
--
-- Each append leaves a dead version of the row behind. A low fillfactor
-- makes PostgreSQL prune them from the page on almost every access, so the
-- chain of versions an update walks stays short (measured: about half the
-- cost of an update at the default fillfactor under a steady append load).
CREATE TABLE {{schema}}.log_head (
	id       BOOLEAN NOT NULL DEFAULT TRUE,
	position BIGINT  NOT NULL,
	CONSTRAINT log_head_pkey PRIMARY KEY (id),
	CONSTRAINT log_head_one_row CHECK (id)
) WITH (fillfactor = 10);
INSERT INTO {{schema}}.log_head (id, position)
SELECT TRUE, COALESCE(MAX(id), 0) FROM {{schema}}.events;
