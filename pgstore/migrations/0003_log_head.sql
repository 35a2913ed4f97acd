-- The log head: one row holding the highest position handed out. Every
-- append updates it first thing in its transaction, which serialises
-- appends in commit order and keeps positions dense (see Store.Append).
CREATE TABLE {{schema}}.log_head (
	id       BOOLEAN NOT NULL DEFAULT TRUE,
	position BIGINT  NOT NULL,
	CONSTRAINT log_head_pkey PRIMARY KEY (id),
	CONSTRAINT log_head_one_row CHECK (id)
);
INSERT INTO {{schema}}.log_head (id, position)
SELECT TRUE, COALESCE(MAX(id), 0) FROM {{schema}}.events;
