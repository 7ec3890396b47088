-- Dead letters are published from the event log (docs/EVENTS.md, "Dead letters"): a rejected
-- row is written in its batch's transaction, its letter published after the commit, and the
-- row marked once the broker has acknowledged the letter. A crash in between leaves the row
-- unmarked, and the next start publishes it.
--
-- dead_letter_by: the daemon (mqtt.client_id) that took the row up for publication, so that
-- daemons sharing a database do not publish the same letter; dead_letter_at: when the broker
-- acknowledged it (epoch milliseconds).
ALTER TABLE events ADD COLUMN dead_letter_by TEXT;
ALTER TABLE events ADD COLUMN dead_letter_at INTEGER;
-- SHA-256 of a rejected row's topic, reason and stored payload: the broker redelivering the
-- payload (its acknowledgement lost) is recognised by it. Written with the row; rows older
-- than this migration have none.
ALTER TABLE events ADD COLUMN payload_digest TEXT;
-- Letters of rows rejected before this migration were sent (or lost) by the old code.
UPDATE events SET dead_letter_at = received_at WHERE status = 'rejected';
-- The few rows with work left, found without reading the event log.
CREATE INDEX events_dead_letters_due ON events (id) WHERE status = 'rejected' AND dead_letter_at IS NULL;
CREATE INDEX events_rejected_digest ON events (payload_digest) WHERE status = 'rejected';
