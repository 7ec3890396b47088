-- Where people are now (NULL: at their depot) and how long they have worked since their last
-- rest; both change at run time, unlike the imported columns.
ALTER TABLE staff ADD COLUMN cur_lon REAL;
ALTER TABLE staff ADD COLUMN cur_lat REAL;
ALTER TABLE staff ADD COLUMN hours_worked REAL NOT NULL DEFAULT 0;

-- The current plan: one row per slot of an open fault, with the cost terms that chose its
-- person (staff_id NULL: unfilled). Pinned rows are a coordinator's and survive re-solves.
CREATE TABLE assignments (
    fault_id    TEXT NOT NULL,
    skill       TEXT NOT NULL,
    slot_index  INTEGER NOT NULL,
    min_level   INTEGER NOT NULL,
    staff_id    TEXT,
    pinned      INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL,
    travel_m    INTEGER NOT NULL DEFAULT 0,
    priority    INTEGER NOT NULL DEFAULT 0,
    on_call     INTEGER NOT NULL DEFAULT 0,
    disruption  INTEGER NOT NULL DEFAULT 0,
    total       INTEGER NOT NULL DEFAULT 0,
    -- When the dispatch notice was created and when the person answered.
    dispatched_at INTEGER,
    answered_at   INTEGER,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (fault_id, skill, slot_index)
);
CREATE INDEX assignments_staff ON assignments (staff_id);

-- People who declined (or did not answer) a fault's dispatch are not offered to it again.
CREATE TABLE staff_declines (
    fault_id  TEXT NOT NULL,
    staff_id  TEXT NOT NULL,
    at        INTEGER NOT NULL,
    how       TEXT NOT NULL,
    PRIMARY KEY (fault_id, staff_id)
);

-- Every coordinator override: who, when, what, why.
CREATE TABLE staffing_audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    staff_id  TEXT,
    fault_id  TEXT,
    detail    TEXT NOT NULL,
    reason    TEXT NOT NULL
);
