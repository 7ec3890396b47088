-- Staged notices (docs/NOTICES.md, "Staged notices"): PostgreSQL writes a large fan-out's
-- outbox here and turns the rows into notices when it claims them. SQLite writes notices
-- directly and never stages; the tables exist so that the queries that count or look up
-- waiting notices read the same on both backends.
CREATE TABLE notice_batches (
    batch      INTEGER PRIMARY KEY AUTOINCREMENT,
    fault_id   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    variant    TEXT NOT NULL,
    priority   INTEGER NOT NULL,
    due_at     INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE staged_notices (
    batch              INTEGER NOT NULL,
    customer_id        TEXT NOT NULL,
    episode_started_at INTEGER NOT NULL,
    PRIMARY KEY (batch, customer_id)
) WITHOUT ROWID;
-- Every notice, staged or not, as far as what it is for and where it stands (inspection).
CREATE VIEW outbox AS
    SELECT customer_id, episode_started_at, kind, variant, fault_id, state FROM notices
    UNION ALL
    SELECT s.customer_id, s.episode_started_at, b.kind, b.variant, b.fault_id, 'queued'
    FROM staged_notices s JOIN notice_batches b ON b.batch = s.batch;
