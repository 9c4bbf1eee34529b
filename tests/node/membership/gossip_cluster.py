"""Real gossip nodes inside one test process: a grpc.aio server over mutual TLS on a
127.0.0.x address, a PeerTransport and a MembershipRunner each.

The server serves only ``NodeService.Gossip`` (a test servicer that hands the
payload to the runner); the daemon's own servicer and interceptors are the lead's
and are tested with whole node processes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from murmur.certs import CertificateAuthority, IdentityBundle, Role
from murmur.node.gossip import GossipConfig, MemberState
from murmur.node.membership import (
    GRPC_PIGGYBACK_BYTES,
    MembershipRunner,
    PeerTransport,
    encode_meta,
)
from murmur.v1 import node_pb2, node_pb2_grpc, types_pb2

FAST = GossipConfig(
    probe_interval=0.2,
    probe_timeout=0.1,
    gossip_interval=0.05,
    push_pull_interval=2.0,
    reconnect_interval=0.0,
    join_retry_interval=0.2,
    suspicion_check_lead=0.2,
    refused_suspicion_timeout=0.5,
    max_piggyback_bytes=GRPC_PIGGYBACK_BYTES,
)
"""Gossip timings scaled down about 5x so that a test takes a second or two."""

SERVER_OPTIONS = [
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
]
"""The node server's keepalive settings (node/api/server.py), which the transport's
client keepalive must respect."""

Context = grpc.aio.ServicerContext[Any, Any]


class GossipOnlyServicer(node_pb2_grpc.NodeServiceServicer):
    """NodeService.Gossip handed to a runner (set once the runner exists)."""

    def __init__(self) -> None:
        self.runner: MembershipRunner | None = None
        self.calls = 0

    async def Gossip(
        self, request: node_pb2.GossipRequest, context: Context
    ) -> node_pb2.GossipResponse:
        self.calls += 1
        if self.runner is not None:
            await self.runner.receive(request.from_address, request.payload)
        return node_pb2.GossipResponse()

    async def Ping(self, request: node_pb2.PingRequest, context: Context) -> node_pb2.PingResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "a gossip-only test server")

    async def Describe(
        self, request: node_pb2.DescribeRequest, context: Context
    ) -> types_pb2.NodeInfo:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "a gossip-only test server")


async def start_gossip_server(
    bundle: IdentityBundle, host: str, servicer: node_pb2_grpc.NodeServiceServicer, port: int = 0
) -> tuple[grpc.aio.Server, str]:
    """A started mTLS server (client certificates from ``bundle``'s CA only)."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    node_pb2_grpc.add_NodeServiceServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [(bundle.key_pem, bundle.certificate_pem)],
        root_certificates=bundle.ca_certificate_pem,
        require_client_auth=True,
    )
    bound = server.add_secure_port(f"{host}:{port}", credentials)
    assert bound, f"cannot listen on {host}:{port}"
    await server.start()
    return server, f"{host}:{bound}"


def node_info(name: str, address: str, **labels: str) -> types_pb2.NodeInfo:
    return types_pb2.NodeInfo(
        name=name,
        address=address,
        state=types_pb2.NODE_STATE_ALIVE,
        labels=labels,
        voter=True,
        runtimes=["process"],
        datasets=[types_pb2.Dataset(name=f"{name}-data", node=name, size_bytes=1024)],
    )


@dataclass
class GossipNode:
    """One running node; ``info`` is what it gossips (edit it to change its meta)."""

    name: str
    address: str
    info: types_pb2.NodeInfo
    server: grpc.aio.Server
    servicer: GossipOnlyServicer
    transport: PeerTransport
    runner: MembershipRunner
    task: asyncio.Task[None]
    stopped: bool = False

    def states(self) -> dict[str, MemberState]:
        """Member name → state, as this node sees it."""
        return {m.name: m.state for m in self.runner.members()}

    async def crash(self) -> None:
        """Stop like a killed process: the port closes, nothing is said."""
        if self.stopped:
            return
        self.stopped = True
        await self.server.stop(0)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.transport.close()


@dataclass
class GossipLab:
    """Makes gossip nodes from one CA; :meth:`close` crashes whatever still runs."""

    ca: CertificateAuthority
    config: GossipConfig = FAST
    nodes: list[GossipNode] = field(default_factory=list)

    async def start(
        self,
        name: str,
        host: str,
        *,
        seeds: list[str],
        bundle: IdentityBundle | None = None,
        config: GossipConfig | None = None,
        meta: Callable[[types_pb2.NodeInfo], bytes] = encode_meta,
        meta_refresh_interval: float = 0.1,
    ) -> GossipNode:
        if bundle is None:
            bundle = self.ca.issue(
                name=name, role=Role.NODE, validity_days=30, node_addresses=[host]
            )
        servicer = GossipOnlyServicer()
        server, address = await start_gossip_server(bundle, host, servicer)
        info = node_info(name, address, host=host)
        transport = PeerTransport(bundle)
        runner = MembershipRunner(
            name=name,
            advertise_address=address,
            transport=transport,
            config=config or self.config,
            seeds=seeds,
            meta_source=lambda: meta(info),
            rng_seed=len(self.nodes) + 1,
            meta_refresh_interval=meta_refresh_interval,
        )
        servicer.runner = runner
        task = asyncio.create_task(runner.run(), name=f"membership-{name}")
        node = GossipNode(name, address, info, server, servicer, transport, runner, task)
        self.nodes.append(node)
        return node

    async def start_joined(self, count: int) -> list[GossipNode]:
        """``count`` nodes on 127.0.0.2, .3, ..., all joined through the first."""
        first = await self.start("node-1", "127.0.0.2", seeds=[])
        rest = [
            await self.start(f"node-{i}", f"127.0.0.{i + 1}", seeds=[first.address])
            for i in range(2, count + 1)
        ]
        nodes = [first, *rest]
        async with asyncio.timeout(15):
            await asyncio.gather(*(node.runner.join() for node in nodes))
        return nodes

    async def close(self) -> None:
        for node in self.nodes:
            await node.crash()


async def eventually(
    predicate: Callable[[], bool], *, within: float = 15.0, what: str = "the condition"
) -> None:
    """Wait until ``predicate()`` holds; fail after ``within`` seconds. The bound is
    generous: these are correctness checks, not benchmarks."""
    interval = 0.02
    for _ in range(round(within / interval)):
        if predicate():
            return
        await asyncio.sleep(interval)
    assert predicate(), f"{what} did not happen within {within} s"
