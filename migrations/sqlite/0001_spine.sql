-- Times are milliseconds since the Unix epoch (UTC) in both backends, so the SQL is shared.
CREATE TABLE customers (
    customer_id   TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    lon           REAL NOT NULL,
    lat           REAL NOT NULL,
    phone         TEXT,
    email         TEXT,
    push_token    TEXT,
    language      TEXT NOT NULL,
    channels      TEXT NOT NULL,
    quiet_hours   TEXT,
    timezone      TEXT NOT NULL,
    critical      TEXT,
    feeder        TEXT,
    service_point TEXT,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX customers_updated_at ON customers (updated_at);

CREATE TABLE staff (
    staff_id        TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    phone           TEXT,
    email           TEXT,
    skills          TEXT NOT NULL,
    languages       TEXT NOT NULL,
    lon             REAL NOT NULL,
    lat             REAL NOT NULL,
    status          TEXT NOT NULL,
    max_shift_hours REAL NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Every payload received: applied, stale, ignored, duplicate or rejected (with the reason).
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT,
    fault_id    TEXT,
    kind        TEXT,
    seq         INTEGER,
    topic       TEXT NOT NULL,
    payload     BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    status      TEXT NOT NULL,
    reason      TEXT
);
-- The idempotency guarantee: an event_id is accepted once, whatever happens to the daemon.
CREATE UNIQUE INDEX events_accepted_once ON events (event_id) WHERE status IN ('applied', 'stale', 'ignored');
CREATE INDEX events_fault ON events (fault_id);
CREATE INDEX events_status ON events (status, received_at);

CREATE TABLE faults (
    fault_id    TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    cause       TEXT NOT NULL,
    severity    TEXT NOT NULL,
    area        TEXT,
    radius_m    REAL,
    devices     TEXT NOT NULL,
    etr         INTEGER,
    starts_at   INTEGER,
    ends_at     INTEGER,
    seq         INTEGER,
    detected_at INTEGER,
    restored_at INTEGER,
    momentary   BOOLEAN NOT NULL,
    crew_needs  TEXT NOT NULL,
    note        TEXT,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX faults_state ON faults (state);

-- A customer's relation to a fault: out, planned, restored or cancelled.
CREATE TABLE customer_outages (
    fault_id    TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    state       TEXT NOT NULL,
    since       INTEGER NOT NULL,
    restored_at INTEGER,
    PRIMARY KEY (fault_id, customer_id)
);
CREATE INDEX customer_outages_customer ON customer_outages (customer_id, state);
