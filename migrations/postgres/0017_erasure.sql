-- Erasure of a customer (docs/DATA.md, "Erasure"). A request blanks the customer's row at once
-- and marks it erased: the row is then a tombstone, the id and nothing else, kept until the
-- erasure completes so that every daemon's customer reload sees the change and drops the
-- customer from its faults. `erasure_requests` holds the erasures not complete yet: their
-- history still names the customer, until nothing of theirs is in flight and every daemon has
-- had time to reload; then the history moves to a pseudonym and both rows go.
ALTER TABLE customers ADD COLUMN erased_at BIGINT;
CREATE TABLE erasure_requests (
    customer_id  TEXT COLLATE "C" PRIMARY KEY,
    requested_at BIGINT NOT NULL
);
