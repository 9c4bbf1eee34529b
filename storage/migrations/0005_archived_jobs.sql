-- Jobs the replicated queue forgot (a ForgetJobs command: they ended longer ago than
-- the cluster's job retention), kept by every voter that applied the command so that
-- `murmur job show` and `murmur job list --all` still find them. data is the
-- serialized murmur.v1.ControlJob, opaque to the store (the contract grows without a
-- migration); the other columns are for lookups. submit_order is the job's SubmitJob
-- log index: listings page by it, as the live queue does.

CREATE TABLE archived_jobs (
    id            TEXT PRIMARY KEY NOT NULL,
    submit_order  INTEGER NOT NULL,
    user          TEXT NOT NULL,
    queue         TEXT NOT NULL,
    state         TEXT NOT NULL,
    ended_at      INTEGER NOT NULL,
    archived_at   INTEGER NOT NULL,
    data          BLOB NOT NULL
);

CREATE INDEX archived_jobs_by_submit_order ON archived_jobs (submit_order);
