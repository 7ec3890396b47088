-- The delivery worker's claim reads the queue in (priority, due_at, id) order among queued
-- notices only; a partial index keeps that a short index walk however many notices are done.
CREATE INDEX notices_queue ON notices (priority, due_at, id) WHERE state = 'queued';
