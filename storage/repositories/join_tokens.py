"""The ``join_tokens`` table: one-time tokens that admit a new node.

Only the SHA-256 of a token's secret is stored, so a copy of the store cannot be used
to join. Consuming a token must run inside a write transaction to be single-use.
"""

from __future__ import annotations

import hmac
import re
import sqlite3
from dataclasses import replace
from datetime import datetime

import aiosqlite

from murmur.storage.errors import (
    TokenExistsError,
    TokenExpiredError,
    TokenUnknownError,
    TokenUsedError,
)
from murmur.storage.records import JoinTokenRecord
from murmur.storage.timestamps import from_micros, optional_from_micros, to_micros

_COLUMNS = "token_id, secret_sha256, created_at, expires_at, created_by, used_at, used_by"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_NO_SUCH_HASH = "-" * 64
"""Compared against when the id is unknown, so both refusals take the same path; it is
not hex, so it matches no well-formed hash."""


def _from_row(row: sqlite3.Row) -> JoinTokenRecord:
    return JoinTokenRecord(
        token_id=row["token_id"],
        secret_sha256=row["secret_sha256"],
        created_at=from_micros(row["created_at"]),
        expires_at=from_micros(row["expires_at"]),
        created_by=row["created_by"],
        used_at=optional_from_micros(row["used_at"]),
        used_by=row["used_by"],
    )


async def insert(
    connection: aiosqlite.Connection,
    *,
    token_id: str,
    secret_sha256: str,
    created_at: datetime,
    expires_at: datetime,
    created_by: str,
) -> None:
    """Store a new, unused token.

    Raises:
        ValueError: ``secret_sha256`` is not 64 lowercase hex digits (a guard against
            storing the secret itself), or the token expires before it is created.
        TokenExistsError: a token with this id is already stored.
    """
    if _SHA256_HEX.fullmatch(secret_sha256) is None:
        raise ValueError("secret_sha256 must be the SHA-256 hex digest of the secret")
    if expires_at <= created_at:
        raise ValueError(f"token expires ({expires_at}) before it is created ({created_at})")
    try:
        await connection.execute(
            "INSERT INTO join_tokens (token_id, secret_sha256, created_at, expires_at, "
            "created_by) VALUES (?, ?, ?, ?, ?)",
            (token_id, secret_sha256, to_micros(created_at), to_micros(expires_at), created_by),
        )
    except sqlite3.IntegrityError as error:
        if error.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
            raise TokenExistsError(token_id) from error
        raise


async def consume(
    connection: aiosqlite.Connection,
    *,
    token_id: str,
    secret_sha256: str,
    now: datetime,
    used_by: str,
) -> JoinTokenRecord:
    """Mark the token used by ``used_by`` and return it as stored now.

    Checks, in order: the id and secret (one error for both), then use, then expiry.

    Raises:
        TokenUnknownError: no token with this id, or the secret's hash does not match.
        TokenUsedError: the token was used before.
        TokenExpiredError: ``now`` is at or past the token's expiry.
    """
    rows = list(
        await connection.execute_fetchall(
            f"SELECT {_COLUMNS} FROM join_tokens WHERE token_id = ?", (token_id,)
        )
    )
    stored_hash = str(rows[0]["secret_sha256"]) if rows else _NO_SUCH_HASH
    well_formed = _SHA256_HEX.fullmatch(secret_sha256) is not None
    given_hash = secret_sha256 if well_formed else ""
    hashes_match = hmac.compare_digest(stored_hash.encode(), given_hash.encode())
    if not rows or not hashes_match:
        raise TokenUnknownError(token_id)
    token = _from_row(rows[0])
    if token.used_at is not None:
        raise TokenUsedError(
            token_id, used_by=token.used_by or "an unknown node", used_at=token.used_at
        )
    if now >= token.expires_at:
        raise TokenExpiredError(token_id, expired_at=token.expires_at)
    used_micros = to_micros(now)
    await connection.execute(
        "UPDATE join_tokens SET used_at = ?, used_by = ? WHERE token_id = ?",
        (used_micros, used_by, token_id),
    )
    return replace(token, used_at=from_micros(used_micros), used_by=used_by)
