-- A customer's outage episode: from the moment the first open fault took them out to the moment
-- the last one ended. Overlapping faults share one episode, hence one outage and one
-- restoration notice.
CREATE TABLE outage_episodes (
    customer_id    TEXT NOT NULL,
    started_at     INTEGER NOT NULL,
    first_fault_id TEXT NOT NULL,
    ended_at       INTEGER,
    PRIMARY KEY (customer_id, started_at)
);
CREATE INDEX outage_episodes_open ON outage_episodes (customer_id) WHERE ended_at IS NULL;

-- The outbox. A notice is a row before anything is sent, and the unique key makes creating it
-- twice impossible, across crashes, redeliveries and daemons.
CREATE TABLE notices (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id        TEXT NOT NULL,
    episode_started_at INTEGER NOT NULL,
    kind               TEXT NOT NULL,
    fault_id           TEXT NOT NULL,
    state              TEXT NOT NULL,
    priority           INTEGER NOT NULL,
    due_at             INTEGER NOT NULL,
    reason             TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    UNIQUE (customer_id, episode_started_at, kind)
);
CREATE INDEX notices_due ON notices (state, priority, due_at);
CREATE INDEX notices_fault ON notices (fault_id, state);
