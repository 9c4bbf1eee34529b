"""`LeaderTerm`: one term this node leads, and the tasks started in it.

What the duties start while leading (a StartRun on its way to a node, one node's
reconciliation, a cancel delivered at once) belongs to the term it was started
in. When the term ends (this node was deposed, or the duties start over) or the
node stops, the term cancels its tasks and waits until every one has ended: no
call of a deposed leader is still under way when the next term's duties begin,
and none outlives the daemon.

A task that fails is logged with its traceback and counted
(``LeaderStats.tasks_failed``); the next reconciliation does what it did not. One
that ends because this node no longer leads, or could not commit in time
(``NotLeaderError``, ``ProposalTimeoutError``), did not fail: the term is over, or
its next pass tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from types import TracebackType
from typing import Any

from murmur.node.control.consensus.errors import NotLeaderError, ProposalTimeoutError
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.leader.stats import LeaderStats
from murmur.node.control.queue.commands import Command, encode

_log = logging.getLogger("murmur.leader")

TERM_ENDED = (NotLeaderError, ProposalTimeoutError)
"""What a task of a term raises when the term is over, or when a quorum did not
answer in time: not a failure of the task."""


def now_us() -> int:
    """Wall-clock time in microseconds, as the commands a leader commits carry it."""
    return time.time_ns() // 1000


class LeaderTerm:
    """One term this node leads: whether it still does, its commits, its tasks.

    Use it as an async context manager: leaving the block ends the term's tasks.

    Args:
        number: the Raft term.
        consensus: this node's Raft.
        stats: where the term's failed tasks are counted.
    """

    def __init__(self, number: int, *, consensus: ConsensusRunner, stats: LeaderStats) -> None:
        self.number = number
        self._consensus = consensus
        self._stats = stats
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def running(self) -> int:
        """Tasks of this term that have not ended."""
        return len(self._tasks)

    def leads(self) -> bool:
        """Whether this node still leads this term with its state complete (it may
        act on the replicated state)."""
        return self._consensus.state_is_current() and self._consensus.raft.term == self.number

    async def commit(self, command: Command) -> object:
        """Commit ``command``; returns the control state's result.

        Raises:
            NotLeaderError, ProposalTimeoutError: not committed.
        """
        return await self._consensus.propose(encode(command))

    def start(self, work: Coroutine[Any, Any, None], *, what: str) -> asyncio.Task[None]:
        """Run ``work`` as a task of this term (``what`` names it in the log).

        Raises:
            RuntimeError: the term is over.
        """
        if self._closed:
            work.close()
            raise RuntimeError(f"term {self.number} is over: {what} not started")
        task = asyncio.create_task(work, name=f"term {self.number}: {what}")
        self._tasks.add(task)
        task.add_done_callback(functools.partial(self._ended, what=what))
        return task

    @contextlib.asynccontextmanager
    async def alongside(self, work: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
        """Run ``work`` as a task while the block runs; leaving the block cancels it
        and waits for it. Its failure (but for the term ending) is raised there, to
        whoever runs the term: a loop the term cannot do without."""
        task = asyncio.create_task(work, name=f"term {self.number}")
        try:
            yield task
        finally:
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled():
                error = task.exception()
                if error is not None and not isinstance(error, TERM_ENDED):
                    raise error

    async def close(self) -> None:
        """End the term: cancel its tasks and wait until each has ended. No task
        starts after this."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> LeaderTerm:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _ended(self, task: asyncio.Task[None], *, what: str) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        if isinstance(error, TERM_ENDED):
            _log.debug("%s in term %d ended: %s", what, self.number, error)
            return
        self._stats.tasks_failed += 1
        _log.error(
            "%s failed in term %d",
            what,
            self.number,
            exc_info=error,
            extra={
                "event": "leader.task_failed",
                "term": self.number,
                "task": what,
                "failures": self._stats.tasks_failed,
            },
        )
