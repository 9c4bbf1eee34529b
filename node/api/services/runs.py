"""The run calls a leader makes to a node (StartRun, StopRun, ListRuns): what the
node's executor does with them, and `LocalNodeStub`, which makes them in-process.

The leader places runs on its own node exactly as on any other, stamped with its
term; only the transport differs. A call to itself over mutual TLS cost about
2.5 ms of CPU per run (both sides of the call, HTTP/2, the interceptors): on a
lone node, 15% of the daemon's work in a queue drain. The gRPC servicer and the
local stub run the same functions below, and the stub raises the
``grpc.aio.AioRpcError`` the call would have ended with (node/api/rpc/status_map), so
its caller handles one kind of failure. Only the node's own leader duties call the
stub: there is no caller to authenticate.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.aio

from murmur.node.agent.executor import RunAssignment, RunExecutor
from murmur.node.agent.run_convert import run_message, spec_for_launch
from murmur.node.agent.runtimes.base import GangPlace
from murmur.node.api.rpc.status_map import status_for
from murmur.node.control.leader.node_calls import RunCalls
from murmur.node.errors import InvalidArgumentError
from murmur.v1 import node_pb2

if TYPE_CHECKING:
    from murmur.node.membership.transport import PeerTransport

Request = TypeVar("Request")
Response = TypeVar("Response")

MAX_TERM = 2**63 - 1
"""Largest term or sequence a node stores (SQLite integers are signed 64-bit)."""
MAX_LEASE_SECONDS = 24 * 3600.0


def _check_fencing(request: Any) -> None:
    """Refuses terms the store cannot hold and leases that are not a duration: a term
    of 2**64-1 failed in SQLite, and NaN made every run's lease expire at once."""
    for field in ("term", "sequence", "sender_term"):
        value = getattr(request, field, 0)
        if value > MAX_TERM:
            raise InvalidArgumentError(f"{field} must be at most {MAX_TERM}, got {value}")
    lease = getattr(request, "lease_seconds", 0.0)
    if not (math.isfinite(lease) and 0 <= lease <= MAX_LEASE_SECONDS):
        raise InvalidArgumentError(
            f"lease_seconds must be between 0 and {MAX_LEASE_SECONDS:g}, got {lease}"
        )


async def start_run(
    executor: RunExecutor, request: node_pb2.StartRunRequest
) -> node_pb2.StartRunResponse:
    if not request.run_id or not request.job_id:
        raise InvalidArgumentError("an assignment needs a job id and a run id")
    _check_fencing(request)
    await executor.start_assigned(
        RunAssignment(
            job_id=request.job_id,
            run_id=request.run_id,
            attempt=request.attempt,
            spec=spec_for_launch(request.spec),
            gpu_indices=tuple(request.gpu_indices),
            term=request.term,
            sequence=request.sequence,
            user=request.user,
            lease_seconds=request.lease_seconds,
            sender_term=request.sender_term,
            gang=gang_place_of(request),
        )
    )
    return node_pb2.StartRunResponse()


def gang_place_of(request: node_pb2.StartRunRequest) -> GangPlace | None:
    """Where the run stands in its gang; None for a single-node run.

    Raises:
        InvalidArgumentError: a gang's rank without a rendezvous, or out of range.
    """
    nodes = request.spec.nodes
    if nodes <= 1:
        return None
    gang = request.gang
    if not request.HasField("gang") or not gang.master_addr or not 0 < gang.master_port < 65536:
        raise InvalidArgumentError("a rank of a gang needs its rendezvous address and port")
    if gang.node_rank >= nodes:
        raise InvalidArgumentError(f"node rank {gang.node_rank} of a gang of {nodes} nodes")
    return GangPlace(
        node_rank=gang.node_rank,
        nodes=nodes,
        local_world_size=max(1, request.spec.gpus.count),
        master_addr=gang.master_addr,
        master_port=gang.master_port,
    )


async def stop_run(
    executor: RunExecutor, request: node_pb2.StopRunRequest
) -> node_pb2.StopRunResponse:
    _check_fencing(request)
    await executor.stop_run(
        request.run_id, term=request.term, reason=request.reason, lost=request.lost
    )
    return node_pb2.StopRunResponse()


async def list_runs(
    executor: RunExecutor, request: node_pb2.ListRunsRequest
) -> node_pb2.ListRunsResponse:
    _check_fencing(request)
    runs = await executor.runs_report(term=request.term, lease_seconds=request.lease_seconds)
    return node_pb2.ListRunsResponse(
        runs=[run_message(run) for run in runs], highest_term=executor.highest_term
    )


class LocalNodeStub:
    """This node's run calls, made in-process (see the module docstring): a
    ``RunCalls``, as the leader's duties (node/control/leader/node_calls.py) ask."""

    def __init__(self, executor: RunExecutor) -> None:
        self._executor = executor

    async def StartRun(
        self,
        request: node_pb2.StartRunRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (a gRPC stub's signature)
    ) -> node_pb2.StartRunResponse:
        return await self._call(start_run, request, timeout)

    async def StopRun(
        self,
        request: node_pb2.StopRunRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (a gRPC stub's signature)
    ) -> node_pb2.StopRunResponse:
        return await self._call(stop_run, request, timeout)

    async def ListRuns(
        self,
        request: node_pb2.ListRunsRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (a gRPC stub's signature)
    ) -> node_pb2.ListRunsResponse:
        return await self._call(list_runs, request, timeout)

    async def _call(
        self,
        handler: Callable[[RunExecutor, Request], Awaitable[Response]],
        request: Request,
        deadline_seconds: float | None,
    ) -> Response:
        try:
            return await asyncio.wait_for(handler(self._executor, request), deadline_seconds)
        except TimeoutError:  # as the call's deadline would have ended it
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                "Deadline Exceeded",
                None,
            ) from None
        except Exception as exc:
            code, message = status_for(exc)
            raise grpc.aio.AioRpcError(
                code, grpc.aio.Metadata(), grpc.aio.Metadata(), message, None
            ) from exc


class RunStubs:
    """The run calls for a node's address: this node's in-process, every other
    node's over the shared peer channels (the leader's ``NodeStubs``)."""

    def __init__(self, peers: PeerTransport, local_address: str, local: LocalNodeStub) -> None:
        self._peers = peers
        self._local_address = local_address
        self._local = local

    def node_stub(self, address: str) -> RunCalls:
        if address == self._local_address:
            return self._local
        return self._peers.node_stub(address)
