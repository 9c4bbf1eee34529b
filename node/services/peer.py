"""NodeService: what nodes ask each other. Only callers with the node role get here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc

from node.convert import timestamp
from node.errors import NotServedError
from node.local_node import LocalNode
from proto.murmur.v1 import node_pb2, node_pb2_grpc, types_pb2

Context = grpc.aio.ServicerContext[Any, Any]


class PeerServicer(node_pb2_grpc.NodeServiceServicer):
    def __init__(self, local: LocalNode) -> None:
        self._local = local

    async def Ping(self, request: node_pb2.PingRequest, context: Context) -> node_pb2.PingResponse:
        return node_pb2.PingResponse(
            node=self._local.name, sequence=request.sequence, time=timestamp(datetime.now(UTC))
        )

    async def Gossip(
        self, request: node_pb2.GossipRequest, context: Context
    ) -> node_pb2.GossipResponse:
        # node/membership has the transport and runner; the daemon does not run them yet.
        raise NotServedError("gossip membership is not running in this version of the daemon")

    async def Describe(
        self, request: node_pb2.DescribeRequest, context: Context
    ) -> types_pb2.NodeInfo:
        return self._local.describe()
