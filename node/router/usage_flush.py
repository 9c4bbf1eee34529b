"""`UsageFlusher`: this router's API key usage, into the replicated control log.

Every ``interval`` (the node's ``router_usage_flush_seconds``, 5 s by default) the
counts gathered since the last flush (node/router/usage.py) go to the leader as
one ``RecordApiKeyUsage`` command, for every key at once; nothing is sent while no
key was used. Once committed they are the cluster's: ``murmur apikey usage``
answers them from any node, and they outlive this node.

A flush that failed (no leader, a timeout) is sent again as it was, with the same
sequence number, before anything newer: if the first try was committed after all,
the state skips the second (node/control/queue/api_keys.py), so a count is never
added twice. A flush the state refused is dropped and logged (a bug). What was
counted since the last flush is lost with this node's process: at most
``interval`` seconds of usage; the daemon flushes once more when it stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc

from murmur.node.control.queue.commands import (
    MAX_USAGE_DELTAS,
    ApiKeyUsageDelta,
    Command,
    RecordApiKeyUsage,
)
from murmur.node.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PeerRefusedError,
    PermissionDeniedError,
    UpgradeInProgressError,
)
from murmur.node.router.usage import UsageCounter

_log = logging.getLogger("murmur.router")

DEFAULT_FLUSH_SECONDS = 5.0

_REFUSED = (InvalidArgumentError, FailedPreconditionError, NotFoundError, PermissionDeniedError)
"""The state's own refusals, for good: sending the flush again would not help."""
_REFUSED_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)
"""The same refusals, from the leader the command was forwarded to."""


class UsageFlusher:
    """Flushes ``counter`` into the control log through ``commit``.

    Args:
        counter: this router's counts.
        commit: commits a command through the leader (``ClusterJobs.commit``).
        origin: this node's name.
        interval: seconds between flushes.
    """

    def __init__(
        self,
        *,
        counter: UsageCounter,
        commit: Callable[[Command], Awaitable[None]],
        origin: str,
        interval: float = DEFAULT_FLUSH_SECONDS,
    ) -> None:
        self._counter = counter
        self._commit = commit
        self._origin = origin
        self._incarnation = uuid.uuid4().hex[:12]
        self._interval = interval
        self._seq = 0
        self._unsent: RecordApiKeyUsage | None = None
        self.flushed = 0
        """Flushes committed (for tests and the node's stats)."""

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush_once()

    async def flush_once(self) -> bool:
        """Sends the flush that failed last time, else the counts since the last one;
        whether everything counted so far is in the log now."""
        while True:
            if self._unsent is None:
                taken = self._counter.take(MAX_USAGE_DELTAS)
                if not taken:
                    return True
                self._seq += 1
                self._unsent = RecordApiKeyUsage(
                    origin=self._origin,
                    incarnation=self._incarnation,
                    seq=self._seq,
                    deltas=tuple(
                        ApiKeyUsageDelta(key_id, c.requests, c.prompt_tokens, c.completion_tokens)
                        for key_id, c in taken.items()
                    ),
                    at_us=time.time_ns() // 1000,
                )
            try:
                await self._commit(self._unsent)
            except UpgradeInProgressError as exc:  # a node of an older murmur: later
                return self._unflushed(exc)
            except _REFUSED as exc:
                self._drop(exc)
            except PeerRefusedError as exc:
                if exc.code not in _REFUSED_CODES:
                    return self._unflushed(exc)
                self._drop(exc)
            except Exception as exc:  # no leader, a timeout: maybe committed, so resent as is
                return self._unflushed(exc)
            else:
                self.flushed += 1
            self._unsent = None

    def _unflushed(self, error: Exception) -> bool:
        _log.info("API key usage not flushed yet: %s", error,
                  extra={"event": "router.usage_unflushed"})  # fmt: skip
        return False

    def _drop(self, error: Exception) -> None:
        _log.error(
            "the control log refused API key usage (%d key(s)): %s",
            len(self._unsent.deltas) if self._unsent else 0, error,
            extra={"event": "router.usage_refused"},
        )  # fmt: skip
