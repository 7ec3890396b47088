-- Every state change of a notice rewrote an entry in every index that mentions the state (on
-- PostgreSQL, a changed indexed column means a new entry in every index of the table). A
-- fan-out changes each notice's state three times, so fewer and partial indexes are faster.
--
-- The whole-table (state, priority, due_at) index served only the claim, which uses
-- notices_queue now, and the crash sweeper, which looks for claims in hand: a partial index
-- over those few rows does.
DROP INDEX notices_due;
CREATE INDEX notices_in_hand ON notices (updated_at) WHERE state IN ('claimed', 'sending');
-- Only sent notices have a provider id (receipts look them up by it).
DROP INDEX notices_provider;
CREATE INDEX notices_provider ON notices (provider_id) WHERE provider_id IS NOT NULL;
-- Status counts and per-fault lookups need the fault only; the state read from the row.
DROP INDEX notices_fault;
CREATE INDEX notices_fault ON notices (fault_id);
-- The retention purge runs once a night; a scan then is cheaper than an index every notice
-- insert pays for.
DROP INDEX notices_created;
