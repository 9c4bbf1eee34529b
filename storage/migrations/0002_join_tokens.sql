-- One-time join tokens. Only the SHA-256 of the secret is stored, never the secret.

CREATE TABLE join_tokens (
    token_id      TEXT PRIMARY KEY NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    used_at       INTEGER,
    used_by       TEXT
);

-- `murmur job logs`/events of one job read events by subject, in id order.
CREATE INDEX events_by_subject ON events (subject, id);
