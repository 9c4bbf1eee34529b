-- Certificate revocations this node enforces (`murmur cert revoke`): the control
-- log's RevokeCertificate entries, as this node learnt them (applied from its log
-- when it votes, pulled from a peer otherwise). Kept here so that a restarted node
-- refuses a revoked certificate before it hears from the cluster. Entries are never
-- removed: the list only grows. log_index is the entry's index in the control log.

CREATE TABLE revocations (
    log_index     INTEGER PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,      -- '' for a revocation by serial
    serial        TEXT NOT NULL,      -- '' for a revocation by name
    revoked_at    INTEGER NOT NULL,   -- microseconds since the epoch
    revoked_by    TEXT NOT NULL,
    reason        TEXT NOT NULL
);
