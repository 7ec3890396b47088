-- The fault index was a B-tree entry per notice row version: every notice insert and each of
-- its three state changes (claimed, sending, sent) paid for one, a fifth of a million-notice
-- fan-out's outbox write. Lookups by fault (status counts, the fault page, search, cancel)
-- are few, so a bloom BRIN serves them: one summary per 16 pages, which an insert seldom has
-- to touch, and a lookup reads only the ranges whose filter may hold the fault (plus the not
-- yet summarised tail, which autosummarize keeps short).
DROP INDEX notices_fault;
CREATE INDEX notices_fault ON notices USING brin (fault_id text_bloom_ops)
    WITH (pages_per_range = 16, autosummarize = on);
