-- Staged notices: the outbox of a large fan-out, written in the commit of the change that calls
-- for it and turned into `notices` rows when claimed (docs/NOTICES.md, "Staged notices").
--
-- A `notices` row carries a dozen columns and four B-trees (id, the unique key, the queue, the
-- fault); a million of them took 6–7 s to write in the commit, more than psql's own COPY of the
-- heap alone. A staged row is what varies per customer, under one narrow key: what the
-- customers of a fan-out share (fault, kind, variant, priority, due time) is written once, in
-- its batch. The unique key still guards every notice: a claim creates the `notices` row, and
-- skips a staged row whose notice exists.
CREATE TABLE notice_batches (
    batch      BIGSERIAL PRIMARY KEY,
    fault_id   TEXT COLLATE "C" NOT NULL,
    kind       TEXT COLLATE "C" NOT NULL,
    variant    TEXT COLLATE "C" NOT NULL,
    priority   BIGINT NOT NULL,
    due_at     BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE staged_notices (
    batch              BIGINT NOT NULL,
    customer_id        TEXT COLLATE "C" NOT NULL,
    episode_started_at BIGINT NOT NULL,
    PRIMARY KEY (batch, customer_id)
);
-- Every notice, staged or not, as far as what it is for and where it stands (inspection).
CREATE VIEW outbox AS
    SELECT customer_id, episode_started_at, kind, variant, fault_id, state FROM notices
    UNION ALL
    SELECT s.customer_id, s.episode_started_at, b.kind, b.variant, b.fault_id, 'queued'
    FROM staged_notices s JOIN notice_batches b ON b.batch = s.batch;
