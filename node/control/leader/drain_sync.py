"""`DrainFlagSync`: on the leader, keeps each node's own drain flag in step with
the control log.

A drain is committed to the log before the node keeps its flag (node/control/drain.py),
so the two can disagree only for a moment, or after the node stopped between the
two, or came back from an old backup. The log wins: every ``SYNC_INTERVAL_SECONDS``
the leader compares each drain the log holds with the node's gossiped state, and
a node that disagrees twice in a row (gossip lags a round) is told the log's drain
(``NodeService.SetDraining`` with ``from_log``); it follows unless it has drained
or undrained itself since. Placement does not wait for this: it reads the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from murmur.node.control.cluster_view import ClusterView
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.drain import NodeDrain
from murmur.node.control.queue.records import DrainRecord
from murmur.node.control.queue.state import ControlState
from murmur.v1 import node_pb2, types_pb2

if TYPE_CHECKING:
    from murmur.v1.node_pb2_grpc import NodeServiceAsyncStub

_log = logging.getLogger("murmur.leader")

SYNC_INTERVAL_SECONDS = 5.0
CALL_TIMEOUT_SECONDS = 5.0

_UP_STATES = (types_pb2.NODE_STATE_ALIVE, types_pb2.NODE_STATE_DRAINING)


class DrainFlagSync:
    """Tells nodes whose flag disagrees with the log what the log says (leader only).

    Args:
        drain: this node's own flag (when the leader itself disagrees).
        node_stub: the NodeService stub of a peer's address.
    """

    def __init__(
        self,
        *,
        consensus: ConsensusRunner,
        control: ControlState,
        view: ClusterView,
        drain: NodeDrain,
        node_stub: Callable[[str], NodeServiceAsyncStub],
        interval: float = SYNC_INTERVAL_SECONDS,
    ) -> None:
        self._consensus = consensus
        self._control = control
        self._view = view
        self._drain = drain
        self._node_stub = node_stub
        self._interval = interval
        self._disagreed: set[str] = set()
        """Nodes seen disagreeing at the last check."""

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if self._consensus.is_leader and self._consensus.state_is_current():
                await self.sync_once()
            else:
                self._disagreed.clear()

    async def sync_once(self) -> list[str]:
        """One comparison; returns the nodes told the log's drain."""
        disagreeing = {
            drain.node: drain for drain in self._control.drains() if self._disagrees(drain)
        }
        told = [name for name in sorted(disagreeing) if name in self._disagreed]
        self._disagreed = set(disagreeing)
        for name in told:
            await self._tell(disagreeing[name])
        return told

    def _disagrees(self, drain: DrainRecord) -> bool:
        info = self._view.node(drain.node)
        if info is None or info.state not in _UP_STATES:
            return False  # a node that is not up says nothing; it is told once back
        return (info.state == types_pb2.NODE_STATE_DRAINING) != drain.draining

    async def _tell(self, drain: DrainRecord) -> None:
        _log.info(
            "node %s's drain flag disagrees with the control log; telling it",
            drain.node,
            extra={"event": "leader.drain_sync", "node": drain.node, "draining": drain.draining},
        )
        if drain.node == self._consensus.name:
            await self._drain.follow_log(drain.draining, at_us=drain.at_us, requested_by=drain.by)
            return
        info = self._view.node(drain.node)
        if info is None:
            return
        request = node_pb2.SetDrainingRequest(
            draining=drain.draining, requested_by=drain.by, from_log=True, at_us=drain.at_us
        )
        try:
            await self._node_stub(info.address).SetDraining(request, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            _log.warning(
                "could not tell %s the log's drain: %s", drain.node, exc.details() or exc.code()
            )
