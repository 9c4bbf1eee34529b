-- Raft's durable state (node/consensus): what a voter must not forget across a crash.
-- raft_hard_state holds one row: the current term and the vote cast in it. raft_log
-- holds the entries after the snapshot; raft_snapshot one row: the replicated state up
-- to last_index, which the log before it was compacted into. Entries are opaque to the
-- store: kind is 'command', 'noop' or 'voters'; voters is a JSON list of node names.

CREATE TABLE raft_hard_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    term       INTEGER NOT NULL,
    voted_for  TEXT
);

CREATE TABLE raft_log (
    idx     INTEGER PRIMARY KEY NOT NULL,
    term    INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    data    BLOB NOT NULL,
    voters  TEXT NOT NULL
);

CREATE TABLE raft_snapshot (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last_term   INTEGER NOT NULL,
    last_index  INTEGER NOT NULL,
    voters      TEXT NOT NULL,
    data        BLOB NOT NULL
);
