"""Join tokens: stored by hash, single use even under concurrency."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from murmur.storage import (
    JoinTokenRecord,
    Store,
    TokenExistsError,
    TokenExpiredError,
    TokenUnknownError,
    TokenUsedError,
)

_CREATED = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)
_EXPIRES = _CREATED + timedelta(hours=1)
_SECRET_HASH = hashlib.sha256(b"correct horse battery staple").hexdigest()
_WRONG_HASH = hashlib.sha256(b"wrong secret").hexdigest()


@pytest.fixture
async def token_store(store: Store) -> Store:
    await store.add_join_token(
        token_id="tok-1",
        secret_sha256=_SECRET_HASH,
        created_at=_CREATED,
        expires_at=_EXPIRES,
        created_by="ada",
    )
    return store


async def _consume(store: Store, *, used_by: str = "gpu-02", minutes: int = 5) -> JoinTokenRecord:
    return await store.consume_join_token(
        token_id="tok-1",
        secret_sha256=_SECRET_HASH,
        now=_CREATED + timedelta(minutes=minutes),
        used_by=used_by,
    )


async def test_consume_marks_the_token_used(token_store: Store) -> None:
    used = await _consume(token_store)
    assert used == JoinTokenRecord(
        token_id="tok-1",
        secret_sha256=_SECRET_HASH,
        created_at=_CREATED,
        expires_at=_EXPIRES,
        created_by="ada",
        used_at=_CREATED + timedelta(minutes=5),
        used_by="gpu-02",
    )


async def test_second_consume_says_who_used_it(token_store: Store) -> None:
    await _consume(token_store, used_by="gpu-02")
    with pytest.raises(TokenUsedError, match="gpu-02") as refused:
        await _consume(token_store, used_by="gpu-03", minutes=6)
    assert refused.value.used_at == _CREATED + timedelta(minutes=5)


async def test_used_token_survives_reopen(token_store: Store) -> None:
    await _consume(token_store)
    await token_store.close()
    async with await Store.open(token_store.path) as reopened:
        with pytest.raises(TokenUsedError):
            await _consume(reopened)


async def test_wrong_secret_and_unknown_id_are_the_same_error(token_store: Store) -> None:
    with pytest.raises(TokenUnknownError) as wrong_secret:
        await token_store.consume_join_token(
            token_id="tok-1", secret_sha256=_WRONG_HASH, now=_CREATED, used_by="x"
        )
    with pytest.raises(TokenUnknownError) as unknown_id:
        await token_store.consume_join_token(
            token_id="tok-2", secret_sha256=_SECRET_HASH, now=_CREATED, used_by="x"
        )
    assert str(wrong_secret.value).replace("tok-1", "ID") == str(unknown_id.value).replace(
        "tok-2", "ID"
    )
    # A refused attempt does not use the token up.
    await _consume(token_store)


@pytest.mark.parametrize(
    "malformed", ["", "not hex", _SECRET_HASH.upper(), _SECRET_HASH + "\n", "é" * 64]
)
async def test_malformed_hash_is_unknown_not_a_crash(token_store: Store, malformed: str) -> None:
    with pytest.raises(TokenUnknownError):
        await token_store.consume_join_token(
            token_id="tok-1", secret_sha256=malformed, now=_CREATED, used_by="x"
        )


async def test_expired_token_is_refused(token_store: Store) -> None:
    with pytest.raises(TokenExpiredError, match="expired at") as refused:
        await _consume(token_store, minutes=60)
    assert refused.value.expired_at == _EXPIRES


async def test_wrong_secret_on_expired_token_reveals_nothing(token_store: Store) -> None:
    with pytest.raises(TokenUnknownError):
        await token_store.consume_join_token(
            token_id="tok-1", secret_sha256=_WRONG_HASH, now=_EXPIRES, used_by="x"
        )


async def test_concurrent_consumes_have_exactly_one_winner(token_store: Store) -> None:
    outcomes = await asyncio.gather(
        *(_consume(token_store, used_by=f"node-{i}") for i in range(10)),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if isinstance(o, JoinTokenRecord)]
    losers = [o for o in outcomes if isinstance(o, TokenUsedError)]
    assert len(winners) == 1
    assert len(losers) == 9
    assert {loser.used_by for loser in losers} == {winners[0].used_by}


async def test_only_a_hash_is_accepted_as_the_secret(store: Store) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        await store.add_join_token(
            token_id="tok-1",
            secret_sha256="the-secret-itself",
            created_at=_CREATED,
            expires_at=_EXPIRES,
            created_by="ada",
        )


async def test_token_expiring_before_creation_is_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="expires"):
        await store.add_join_token(
            token_id="tok-1",
            secret_sha256=_SECRET_HASH,
            created_at=_CREATED,
            expires_at=_CREATED,
            created_by="ada",
        )


async def test_duplicate_token_id_is_refused(token_store: Store) -> None:
    with pytest.raises(TokenExistsError):
        await token_store.add_join_token(
            token_id="tok-1",
            secret_sha256=_WRONG_HASH,
            created_at=_CREATED,
            expires_at=_EXPIRES,
            created_by="bob",
        )
    await _consume(token_store)  # the original secret still works
