-- The cluster's audit trail, as this voter applied it from the control log
-- (RecordAudit entries): one row per audited call, in chain order. hash is the
-- entry's SHA-256 chain hash (over the previous entry's hash and this one's
-- canonical encoding), computed at apply time, so every voter holds the same rows.
-- The local `audit` table stays: it is this node's outbox of calls it took, until
-- they are in the log (meta `audit-shipped-id`).
-- time is microseconds since the epoch (the clock of the node that took the call).

CREATE TABLE audit_chain (
    seq        INTEGER PRIMARY KEY NOT NULL,
    origin     TEXT NOT NULL,       -- '<node>/<incarnation>': whose outbox
    origin_id  INTEGER NOT NULL,    -- the call's id in that outbox
    node       TEXT NOT NULL,       -- the node the client reached
    time       INTEGER NOT NULL,
    user       TEXT NOT NULL,
    role       TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    result     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    hash       BLOB NOT NULL
);

CREATE INDEX audit_chain_by_user ON audit_chain (user, seq);
CREATE INDEX audit_chain_by_time ON audit_chain (time);

-- Chain heads this node restored from a snapshot instead of applying the entries up
-- to them: entries at or below seq are not held here, and the next one is checked
-- against hash.
CREATE TABLE audit_anchors (
    seq   INTEGER PRIMARY KEY NOT NULL,
    hash  BLOB NOT NULL
);
