-- Bad contacts, learned from providers: a number that is invalid or replied STOP, a mailbox that
-- bounced. Delivery skips them; a re-import with a different value clears the mark.
ALTER TABLE customers ADD COLUMN phone_status TEXT;
ALTER TABLE customers ADD COLUMN email_status TEXT;
CREATE INDEX customers_phone ON customers (phone);

-- Several notices of one kind per episode (ETR updates, advance notices at 48 h and 2 h) are told
-- apart by `variant`; the unique key grows by it. SQLite cannot alter a table constraint, so the
-- table is rebuilt.
CREATE TABLE notices_new (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id        TEXT NOT NULL,
    episode_started_at INTEGER NOT NULL,
    kind               TEXT NOT NULL,
    variant            TEXT NOT NULL DEFAULT '',
    fault_id           TEXT NOT NULL,
    state              TEXT NOT NULL,
    priority           INTEGER NOT NULL,
    due_at             INTEGER NOT NULL,
    reason             TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    channel            TEXT,
    language           TEXT,
    body               TEXT,
    provider_id        TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    sent_at            INTEGER,
    failed_channels    TEXT NOT NULL DEFAULT '',
    -- The provider's delivery receipt: delivered, undelivered, failed.
    receipt            TEXT,
    UNIQUE (customer_id, episode_started_at, kind, variant)
);
INSERT INTO notices_new (id, customer_id, episode_started_at, kind, fault_id, state, priority, due_at,
    reason, created_at, updated_at, channel, language, body, provider_id, attempts, sent_at, failed_channels)
SELECT id, customer_id, episode_started_at, kind, fault_id, state, priority, due_at,
    reason, created_at, updated_at, channel, language, body, provider_id, attempts, sent_at, failed_channels
FROM notices;
DROP TABLE notices;
ALTER TABLE notices_new RENAME TO notices;
CREATE INDEX notices_due ON notices (state, priority, due_at);
CREATE INDEX notices_fault ON notices (fault_id, state);
CREATE INDEX notices_provider ON notices (provider_id);
CREATE INDEX notices_created ON notices (created_at);

-- Customers' own outage reports (an SMS reply OUT), shown in the fault status.
CREATE TABLE customer_reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL,
    fault_id    TEXT,
    source      TEXT NOT NULL,
    reported_at INTEGER NOT NULL
);
CREATE INDEX customer_reports_fault ON customer_reports (fault_id);
