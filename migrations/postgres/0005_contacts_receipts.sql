-- Bad contacts, learned from providers: a number that is invalid or replied STOP, a mailbox that
-- bounced. Delivery skips them; a re-import with a different value clears the mark.
ALTER TABLE customers ADD COLUMN phone_status TEXT;
ALTER TABLE customers ADD COLUMN email_status TEXT;
CREATE INDEX customers_phone ON customers (phone);

-- Several notices of one kind per episode (ETR updates, advance notices at 48 h and 2 h) are told
-- apart by `variant`; the unique key grows by it.
ALTER TABLE notices ADD COLUMN variant TEXT NOT NULL DEFAULT '';
ALTER TABLE notices DROP CONSTRAINT notices_customer_id_episode_started_at_kind_key;
ALTER TABLE notices ADD CONSTRAINT notices_unique_key UNIQUE (customer_id, episode_started_at, kind, variant);
-- The provider's delivery receipt: delivered, undelivered, failed.
ALTER TABLE notices ADD COLUMN receipt TEXT;
CREATE INDEX notices_provider ON notices (provider_id);
CREATE INDEX notices_created ON notices (created_at);

-- Customers' own outage reports (an SMS reply OUT), shown in the fault status.
CREATE TABLE customer_reports (
    id          BIGSERIAL PRIMARY KEY,
    customer_id TEXT NOT NULL,
    fault_id    TEXT,
    source      TEXT NOT NULL,
    reported_at BIGINT NOT NULL
);
CREATE INDEX customer_reports_fault ON customer_reports (fault_id);
