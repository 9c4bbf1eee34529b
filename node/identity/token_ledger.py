"""Where join tokens are recorded and consumed.

A cluster's daemon uses :class:`ReplicatedTokenLedger`: the token's creation and
its one use are entries of the control log, committed through the leader, so a
token is single use cluster-wide whichever voter's join listener sees it (the
rules: node/control/queue/join_tokens.py). :class:`StoreTokenLedger` keeps them in
the node's own store, for a node alone (tests of enrollment without consensus).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from murmur.node.control.queue.commands import Command, ConsumeJoinToken, CreateJoinToken
from murmur.storage import Store


class TokenLedger(Protocol):
    async def record(
        self,
        *,
        token_id: str,
        secret_sha256: str,
        created_at: datetime,
        expires_at: datetime,
        created_by: str,
    ) -> None:
        """Records a new token (only its secret's hash)."""
        ...

    async def consume(
        self, *, token_id: str, secret_sha256: str, now: datetime, used_by: str, address: str
    ) -> None:
        """Uses the token once for ``used_by``, or raises why it cannot be used."""
        ...


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


class ReplicatedTokenLedger:
    """Tokens in the control log; ``commit`` is ``ClusterJobs.commit`` (through the
    leader, answered once applied; a refusal raises the state's error)."""

    def __init__(self, commit: Callable[[Command], Awaitable[None]]) -> None:
        self._commit = commit

    async def record(
        self,
        *,
        token_id: str,
        secret_sha256: str,
        created_at: datetime,
        expires_at: datetime,
        created_by: str,
    ) -> None:
        await self._commit(
            CreateJoinToken(
                token_id=token_id,
                secret_sha256=secret_sha256,
                created_by=created_by,
                created_at_us=_us(created_at),
                expires_at_us=_us(expires_at),
            )
        )

    async def consume(
        self, *, token_id: str, secret_sha256: str, now: datetime, used_by: str, address: str
    ) -> None:
        await self._commit(
            ConsumeJoinToken(
                token_id=token_id,
                secret_sha256=secret_sha256,
                node_name=used_by,
                address=address,
                at_us=_us(now),
            )
        )


class StoreTokenLedger:
    """Tokens in this node's store only: single use on this node."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(
        self,
        *,
        token_id: str,
        secret_sha256: str,
        created_at: datetime,
        expires_at: datetime,
        created_by: str,
    ) -> None:
        await self._store.add_join_token(
            token_id=token_id,
            secret_sha256=secret_sha256,
            created_at=created_at,
            expires_at=expires_at,
            created_by=created_by,
        )

    async def consume(
        self, *, token_id: str, secret_sha256: str, now: datetime, used_by: str, address: str
    ) -> None:
        await self._store.consume_join_token(
            token_id=token_id, secret_sha256=secret_sha256, now=now, used_by=used_by
        )
