-- API keys: the secret part is kept only as its SHA-256 (keys are 256-bit random, so a fast
-- hash is enough; a slow password hash would only slow every request). `id` is the key's
-- public prefix, shown in lists and the audit log.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

-- Every write through the API: who (key), when, what (method, path, outcome).
CREATE TABLE api_audit (
    at      BIGINT NOT NULL,
    key_id  TEXT NOT NULL,
    role    TEXT NOT NULL,
    method  TEXT NOT NULL,
    path    TEXT NOT NULL,
    status  INTEGER NOT NULL
);
CREATE INDEX api_audit_at ON api_audit (at);

-- Secrets the daemons generate once and share through the database (the self-service token
-- key), so that every daemon of a cluster, and a restarted one, agrees on them.
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
