-- Jobs submitted to this node, and the runtime each run uses.
-- The spec is the serialized murmur.v1.JobSpec: the store keeps it opaque, so the
-- contract can grow without a migration. submit_order is the queue's tie-breaker.

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY NOT NULL,
    submit_order    INTEGER NOT NULL UNIQUE,
    spec            BLOB NOT NULL,
    user            TEXT NOT NULL,
    queue           TEXT NOT NULL,
    state           TEXT NOT NULL,
    reason          TEXT NOT NULL,
    submitted_at    INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    exit_code       INTEGER,
    not_before      INTEGER,         -- retry backoff: not placed before this time
    cancel_reason   TEXT NOT NULL,   -- non-empty once a cancel was asked for
    idempotency_key TEXT NOT NULL
);

-- A retried submission (same user, same key) finds the job made the first time.
CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs (user, idempotency_key)
    WHERE idempotency_key != '';
CREATE INDEX jobs_by_state ON jobs (state, submit_order);

ALTER TABLE runs ADD COLUMN runtime TEXT NOT NULL DEFAULT '';
