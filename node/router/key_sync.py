"""`KeyBookSync`: the API key table as this node's router knows it.

The table's source is the control log (node/control/queue/api_keys.py). A voter
applies every committed entry, so its router reads its own replica: a key made or
revoked is known there within a heartbeat. Any other node (a learner, a node beyond
the five voters, a voter catching up after a restart) follows no log it can trust
to be current, so it pulls the table from the leader (``NodeService.ListApiKeyHashes``,
hashes only, no usage) every ``PULL_SECONDS``; an unchanged table costs a small
answer. Such a router knows a new or revoked key within ``PULL_SECONDS`` or so.

Until its first pull answers, a router off the log knows no table (``UNKNOWN_BOOK``)
and refuses every key (503) rather than accept a revoked one; a router that loses
the leader keeps the last table it pulled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from murmur.node.control.consensus.leadership import Leadership
from murmur.node.control.queue.api_keys import ApiKeyTable, record_of
from murmur.node.router.keys import UNKNOWN_BOOK, KeyBook
from murmur.v1 import apikeys_pb2

if TYPE_CHECKING:
    from murmur.v1.node_pb2_grpc import NodeServiceAsyncStub

_log = logging.getLogger("murmur.router")

PULL_SECONDS = 2.0
"""How often a router off the log asks the leader whether the key table changed."""
PULL_TIMEOUT_SECONDS = 2.0

Fetch = Callable[[str, int], Awaitable[apikeys_pb2.ListApiKeyHashesResponse]]
"""(a voter's address, the revision held) → the voter's answer."""


def fetch_over(node_stub: Callable[[str], NodeServiceAsyncStub]) -> Fetch:
    """The pull as a NodeService call, on the shared peer channels."""

    async def fetch(address: str, known_revision: int) -> apikeys_pb2.ListApiKeyHashesResponse:
        return await node_stub(address).ListApiKeyHashes(
            apikeys_pb2.ListApiKeyHashesRequest(known_revision=known_revision),
            timeout=PULL_TIMEOUT_SECONDS,
        )

    return fetch


class KeyBookSync:
    """The key table for this node's router (see the module docstring).

    Args:
        table: this node's replica of the control state's key table (it is replaced
            when a snapshot is restored, hence a function).
        is_voter: whether this node votes now (then it applies every committed entry).
        leadership: who leads, as this node can tell.
        fetch: asks a voter, by address, for the table unless it is at the revision
            given (``fetch_over``: NodeService.ListApiKeyHashes).
    """

    def __init__(
        self,
        *,
        table: Callable[[], ApiKeyTable],
        is_voter: Callable[[], bool],
        leadership: Callable[[], Leadership],
        fetch: Fetch,
    ) -> None:
        self._table = table
        self._is_voter = is_voter
        self._leadership = leadership
        self._fetch = fetch
        self._pulled = UNKNOWN_BOOK
        self._local: tuple[ApiKeyTable, int, KeyBook] | None = None
        self.pulls_failed = 0

    def book(self) -> KeyBook:
        """The table as this node knows it now (called per request: cached)."""
        if not self._is_voter():
            return self._pulled
        table = self._table()
        cached = self._local
        if cached is None or cached[0] is not table or cached[1] != table.revision:
            book = KeyBook.of(table.records(), table.revision)
            self._local = cached = (table, table.revision, book)
            self._pulled = book  # where this node starts from, should it stop voting
        return cached[2]

    async def run(self) -> None:
        """Pulls the table while this node follows no log (see the module docstring)."""
        while True:
            if not self._is_voter():
                await self.pull_once()
            await asyncio.sleep(PULL_SECONDS)

    async def pull_once(self) -> bool:
        """Asks the leader for the table; whether it answered."""
        address = self._leadership().leader_address
        if not address:
            return False
        known = self._pulled.revision if self._pulled.known else 0
        try:
            answer = await self._fetch(address, known)
        except (grpc.aio.AioRpcError, OSError) as exc:
            self.pulls_failed += 1
            _log.debug("could not pull the API key table from %s: %s", address, exc,
                       extra={"event": "router.keys_pull_failed"})  # fmt: skip
            return False
        if answer.unchanged and self._pulled.known:
            return True
        if answer.unchanged:  # no key was ever made, and this router knew none
            self._pulled = KeyBook({}, answer.revision)
            return True
        self._pulled = KeyBook.of((record_of(key) for key in answer.keys), answer.revision)
        _log.info(
            "API key table at revision %d: %d key(s)", answer.revision, len(answer.keys),
            extra={"event": "router.keys_pulled", "revision": answer.revision},
        )  # fmt: skip
        return True
