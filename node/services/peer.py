"""NodeService: what nodes ask each other. Only callers with the node role get here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc

from node.cluster_view import ClusterView
from node.convert import timestamp
from node.drain import NodeDrain
from node.errors import InvalidArgumentError, NotServedError
from node.membership import MembershipRunner
from node.rpc.caller import current_caller
from proto.murmur.v1 import node_pb2, node_pb2_grpc, types_pb2

Context = grpc.aio.ServicerContext[Any, Any]

MAX_REQUESTED_BY_CHARS = 256


class PeerServicer(node_pb2_grpc.NodeServiceServicer):
    def __init__(
        self, *, view: ClusterView, drain: NodeDrain, membership: MembershipRunner | None
    ) -> None:
        self._view = view
        self._drain = drain
        self._membership = membership

    async def Ping(self, request: node_pb2.PingRequest, context: Context) -> node_pb2.PingResponse:
        return node_pb2.PingResponse(
            node=self._view.local_name,
            sequence=request.sequence,
            time=timestamp(datetime.now(UTC)),
        )

    async def Gossip(
        self, request: node_pb2.GossipRequest, context: Context
    ) -> node_pb2.GossipResponse:
        if self._membership is None:
            raise NotServedError(f"gossip is not running on {self._view.local_name}")
        # Never fails for what the peer sent: an unusable message is logged and dropped.
        await self._membership.receive(request.from_address, request.payload)
        return node_pb2.GossipResponse()

    async def Describe(
        self, request: node_pb2.DescribeRequest, context: Context
    ) -> types_pb2.NodeInfo:
        return self._view.describe_local()

    async def SetDraining(
        self, request: node_pb2.SetDrainingRequest, context: Context
    ) -> types_pb2.NodeInfo:
        if len(request.requested_by) > MAX_REQUESTED_BY_CHARS:
            raise InvalidArgumentError(
                f"requested_by is longer than {MAX_REQUESTED_BY_CHARS} characters"
            )
        via = current_caller().name
        who = f"{request.requested_by} (via {via})" if request.requested_by else via
        return await self._drain.set(request.draining, requested_by=who)
