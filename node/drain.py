"""Draining: an admin closes this node to new jobs; the jobs it runs finish.

The flag is this node's own state, like its GPUs: it is kept in the node's store
(a drained server that reboots stays drained until someone undrains it), shown
in the node's NodeInfo as ``NODE_STATE_DRAINING`` and gossiped with it. The job
manager reads it on every scheduling pass, so pending jobs say why they wait.
"""

from __future__ import annotations

from collections.abc import Callable

from node.event_log import EventLog
from node.local_node import LocalNode
from proto.murmur.v1 import types_pb2
from storage import Store

DRAINING_META_KEY = "node-draining"


class NodeDrain:
    """Sets and remembers whether this node takes new jobs.

    Args:
        on_change: called after each change (reschedule pending jobs, gossip the
            new state without waiting for the next metadata refresh).
    """

    def __init__(
        self,
        *,
        store: Store,
        local: LocalNode,
        events: EventLog,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._local = local
        self._events = events
        self._on_change = on_change

    async def load(self) -> None:
        """Restore the flag a previous run of the daemon left."""
        self._local.draining = await self._store.get_meta(DRAINING_META_KEY) == "1"

    async def set(self, draining: bool, *, requested_by: str) -> types_pb2.NodeInfo:
        """Drain (or undrain) this node; asking for the state it is in changes nothing.

        Returns:
            This node's NodeInfo after the change.
        """
        if self._local.draining != draining:
            await self._store.set_meta(DRAINING_META_KEY, "1" if draining else "0")
            self._local.draining = draining
            name = self._local.name
            if draining:
                message = f"node {name} drained by {requested_by}: no new jobs start here"
            else:
                message = f"node {name} undrained by {requested_by}: it takes new jobs again"
            await self._events.record(
                kind="node.drained" if draining else "node.undrained",
                subject=name,
                message=message,
            )
            self._on_change()
        return self._local.describe()
