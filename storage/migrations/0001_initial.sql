-- The node's first schema. Timestamps are INTEGER microseconds since the Unix epoch, UTC.
-- Plain (not STRICT) tables so that SQLite older than 3.37 can still read the file.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Datasets held on this node's disks; the catalog is gossiped from here.
CREATE TABLE datasets (
    name            TEXT PRIMARY KEY NOT NULL,
    path            TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL,
    file_count      INTEGER NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    added_at        INTEGER NOT NULL,
    added_by        TEXT NOT NULL
);

-- Runs (one attempt of a job) on this node. term and sequence are the assignment's
-- fencing token; pid with pid_start_time identifies a process despite pid reuse.
CREATE TABLE runs (
    id             TEXT PRIMARY KEY NOT NULL,
    job_id         TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    node           TEXT NOT NULL,
    state          TEXT NOT NULL,
    gpu_indices    TEXT NOT NULL,  -- JSON array of integers
    container_id   TEXT NOT NULL,  -- '' for the process runtime or before start
    pid            INTEGER,
    pid_start_time INTEGER,
    exit_code      INTEGER,
    reason         TEXT NOT NULL,
    term           INTEGER NOT NULL,
    sequence       INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    started_at     INTEGER,
    finished_at    INTEGER
);

CREATE INDEX runs_by_job ON runs (job_id);

CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    time      INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    subject   TEXT NOT NULL,
    message   TEXT NOT NULL,
    job_state TEXT NOT NULL
);

CREATE TABLE audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    time   INTEGER NOT NULL,
    user   TEXT NOT NULL,
    role   TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    result TEXT NOT NULL,
    detail TEXT NOT NULL
);
