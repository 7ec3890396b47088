-- The ETR customers were last told of, per fault: an ETR update is announced when the ETR
-- lies notify.etr_change_minutes from this one, however small each step that got it there.
-- Open faults carry their current ETR over as announced, as their notices did.
ALTER TABLE faults ADD COLUMN etr_announced INTEGER;
UPDATE faults SET etr_announced = etr;
