"""`NodeCalls`: the leader's calls to nodes in one term, and which nodes answered.

Every call carries the term (a node that has seen a newer one refuses, and this
leader soon learns through Raft that it was deposed) and a deadline of at most a
third of the runs' lease. What answers is noted: when each node last answered
(node loss waits out the lease from then) and which nodes a call could not reach
(placement offers them nothing until one answers: gossip may still hold alive a
node that just died). A failed call is counted (``LeaderStats.node_calls_failed``)
and logged at debug level: reconciliation asks again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import grpc
import grpc.aio

from murmur.node.control.cluster_view import DOWN_STATES, ClusterView
from murmur.node.control.leader.stats import LeaderStats
from murmur.v1 import node_pb2, types_pb2

_log = logging.getLogger("murmur.leader")

CALL_TIMEOUT_SECONDS = 3.0
"""Deadline of a call to a node (at most a third of the lease)."""

_UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class RunCalls(Protocol):
    """The part of a node's NodeService stub the leader's duties use. Declared here,
    where it is used: the API provides it (a gRPC stub, or its in-process
    ``LocalNodeStub``), and the control plane never imports the API."""

    @property
    def StartRun(self) -> Callable[..., Awaitable[node_pb2.StartRunResponse]]: ...

    @property
    def StopRun(self) -> Callable[..., Awaitable[node_pb2.StopRunResponse]]: ...

    @property
    def ListRuns(self) -> Callable[..., Awaitable[node_pb2.ListRunsResponse]]: ...


class NodeStubs(Protocol):
    """Where the leader's duties get a node's run calls, by the node's address."""

    def node_stub(self, address: str) -> RunCalls: ...


class NodeCalls:
    """The run calls of one term to every node, this one's own included.

    Args:
        term: the term every call carries.
        leader: this node's name (the ListRuns caller).
        local_address: where this node's own NodeService is reached.
        view: the cluster as gossip sees it (nodes' addresses and states).
        peers: the NodeService stubs by address.
        lease_seconds: the runs' lease; renewed by every ListRuns.
        stats: where failed calls are counted.
    """

    def __init__(
        self,
        term: int,
        *,
        leader: str,
        local_address: str,
        view: ClusterView,
        peers: NodeStubs,
        lease_seconds: float,
        stats: LeaderStats,
    ) -> None:
        self._term = term
        self._leader = leader
        self._local_address = local_address
        self._view = view
        self._peers = peers
        self._lease_seconds = lease_seconds
        self._stats = stats
        self.timeout = min(CALL_TIMEOUT_SECONDS, lease_seconds / 3)
        """Deadline of every call: renewals must reach a node well within its lease."""
        self.contact: dict[str, float] = {}
        """Node → when it last answered this term's leader (monotonic)."""
        self.unreachable: set[str] = set()
        """Nodes whose last call failed to reach them: offered nothing until one
        succeeds."""

    def address_of(self, node: str) -> str | None:
        """Where ``node`` is called; ``None`` while gossip holds it down or unknown."""
        if node == self._leader:
            return self._local_address
        info = self._view.node(node)
        if info is None or info.state in DOWN_STATES:
            return None
        return info.address

    def reached(self, node: str) -> None:
        self.contact[node] = time.monotonic()
        self.unreachable.discard(node)

    def _missed(self, node: str, call: str, error: grpc.aio.AioRpcError) -> None:
        """A call that reaches a node on its own (ListRuns, StartRun) failed: the node
        is held unreachable when the call never got there in time."""
        if error.code() in _UNREACHABLE_CODES:
            self.unreachable.add(node)
        self._failed(node, call, error)

    def _failed(self, node: str, call: str, error: grpc.aio.AioRpcError) -> None:
        self._stats.node_calls_failed += 1
        _log.debug(
            "%s on %s failed: %s",
            call,
            node,
            error.details() or error.code(),
            extra={"event": "leader.node_call_failed", "node": node, "call": call},
        )

    async def list_runs(self, node: str) -> list[types_pb2.Run] | None:
        """The node's own record of its runs (which renews their lease); ``None``
        when it cannot be asked or did not answer."""
        address = self.address_of(node)
        if address is None:
            return None
        request = node_pb2.ListRunsRequest(
            term=self._term, leader=self._leader, lease_seconds=self._lease_seconds
        )
        try:
            response = await self._peers.node_stub(address).ListRuns(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            self._missed(node, "ListRuns", exc)
            return None
        self.reached(node)
        return list(response.runs)

    async def start_run(self, node: str, address: str, request: node_pb2.StartRunRequest) -> None:
        """Hand a run to its node.

        Raises:
            grpc.aio.AioRpcError: the node did not take it.
        """
        try:
            await self._peers.node_stub(address).StartRun(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            self._missed(node, "StartRun", exc)
            raise
        self.reached(node)

    async def stop_run(self, node: str, run_id: str, reason: str, *, lost: bool = False) -> None:
        """Ask ``node`` to stop a run (``lost``: record it lost, not cancelled). Best
        effort: a node that does not answer is asked again at the next
        reconciliation."""
        address = self.address_of(node)
        if address is None:
            return
        request = node_pb2.StopRunRequest(run_id=run_id, term=self._term, reason=reason, lost=lost)
        try:
            await self._peers.node_stub(address).StopRun(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            self._failed(node, "StopRun", exc)
