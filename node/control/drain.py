"""Draining: an admin closes this node to new jobs; the jobs it runs finish.

A drain is a command of the control log (``SetNodeDrain``): this node commits it
through the leader before it answers, so the leader's next placement honours it
(node/control/leader/placement.py), whatever gossip says yet. The node also keeps the
flag as its own: in its store (a drained server that reboots comes back drained)
and in its NodeInfo as ``NODE_STATE_DRAINING``, gossiped, which ``node list`` shows.

The log wins. When the two disagree (the node stopped between the commit and
writing its flag, or came back from an old backup), the leader tells the node
what the log says (``SetDraining`` with ``from_log``, node/control/leader/drain_sync.py)
and the node follows, unless it has set its flag since (each drain carries the
node's own time, increasing from one drain to the next).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from murmur.node.control.queue.commands import SetNodeDrain
from murmur.node.event_log import EventLog
from murmur.node.local_node import LocalNode
from murmur.storage import Store
from murmur.v1 import types_pb2

DRAINING_META_KEY = "node-draining"
DRAINING_AT_META_KEY = "node-draining-at-us"
"""The time of the drain the flag comes from (microseconds; this node's clock)."""


def _now_us() -> int:
    return time.time_ns() // 1000


class NodeDrain:
    """Sets and remembers whether this node takes new jobs.

    Args:
        replicate: commits a drain to the control log (``ClusterJobs.commit``); None
            keeps the flag local only (tests of the flag alone).
        on_change: called after each change (reschedule pending jobs, gossip the
            new state without waiting for the next metadata refresh).
    """

    def __init__(
        self,
        *,
        store: Store,
        local: LocalNode,
        events: EventLog,
        replicate: Callable[[SetNodeDrain], Awaitable[object]] | None = None,
        on_change: Callable[[], None] = lambda: None,
        clock_us: Callable[[], int] = _now_us,
    ) -> None:
        self._store = store
        self._local = local
        self._events = events
        self._replicate = replicate
        self._on_change = on_change
        self._clock_us = clock_us
        self._at_us = 0
        self._lock = asyncio.Lock()
        """One drain at a time, so the flag ends as the last command committed."""

    async def load(self) -> None:
        """Restore the flag a previous run of the daemon left."""
        self._local.draining = await self._store.get_meta(DRAINING_META_KEY) == "1"
        self._at_us = int(await self._store.get_meta(DRAINING_AT_META_KEY) or 0)

    async def set(self, draining: bool, *, requested_by: str) -> types_pb2.NodeInfo:
        """Drain (or undrain) this node: commit it to the control log, then keep the
        flag. Asking for the state it is in commits again (the log may disagree)
        and changes nothing else.

        Returns:
            This node's NodeInfo after the change.

        Raises:
            UnavailableError: no leader committed the drain; nothing changed here.
        """
        async with self._lock:
            at_us = max(self._clock_us(), self._at_us + 1)
            if self._replicate is not None:
                await self._replicate(
                    SetNodeDrain(
                        node=self._local.name, draining=draining, by=requested_by, at_us=at_us
                    )
                )
            await self._keep(draining, at_us, by=requested_by)
        return self._local.describe()

    async def follow_log(
        self, draining: bool, *, at_us: int, requested_by: str
    ) -> types_pb2.NodeInfo:
        """Take the drain the control log holds (the leader saw this node's flag
        disagree with it); a flag set at ``at_us`` or later stays as it is.

        Returns:
            This node's NodeInfo after the change.
        """
        async with self._lock:
            if at_us > self._at_us:
                await self._keep(draining, at_us, by=f"{requested_by} (from the control log)")
        return self._local.describe()

    async def _keep(self, draining: bool, at_us: int, *, by: str) -> None:
        # The flag first: a stop between the two writes leaves an older time, and
        # the leader's correction (which carries the log's time) still applies.
        if self._local.draining != draining:
            await self._store.set_meta(DRAINING_META_KEY, "1" if draining else "0")
            self._local.draining = draining
            name = self._local.name
            if draining:
                message = f"node {name} drained by {by}: no new jobs start here"
            else:
                message = f"node {name} undrained by {by}: it takes new jobs again"
            await self._events.record(
                kind="node.drained" if draining else "node.undrained",
                subject=name,
                message=message,
            )
            self._on_change()
        if at_us > self._at_us:
            await self._store.set_meta(DRAINING_AT_META_KEY, str(at_us))
            self._at_us = at_us
