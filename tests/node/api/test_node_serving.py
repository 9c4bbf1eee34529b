"""A real node process over mTLS: identity, status, health, reflection, audit, shutdown."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import murmur
from murmur import AsyncClient, resolve_connect_config
from murmur.certs import IdentityBundle, Role
from murmur.storage import Store
from murmur.v1 import node_pb2, node_pb2_grpc, types_pb2
from tests.support.cluster import mtls_channel
from tests.support.nodes import Lab, NodeProcess


def client_for(node: NodeProcess, identity: object) -> AsyncClient:
    return AsyncClient(resolve_connect_config(node=node.address, identity=identity))  # type: ignore[arg-type]


async def test_whoami_and_status_show_the_node_and_its_simulated_gpus(
    lab: Lab, ca_node: NodeProcess
) -> None:
    async with client_for(ca_node, lab.admin_identity) as client:
        me = await client.whoami()
        status = await client.status()
    assert me.identity.name == "admin"
    assert me.identity.role == types_pb2.ROLE_ADMIN
    assert me.identity.ca_fingerprint == lab.ca.fingerprint
    assert me.node == "node-1"
    assert [n.name for n in status.nodes] == ["node-1"]
    node = status.nodes[0]
    assert node.address == ca_node.address
    assert node.gpus.source == types_pb2.GPU_SOURCE_SIMULATED
    assert len(node.gpus.devices) == 8
    assert all(d.simulated for d in node.gpus.devices)
    assert status.gpus_total == 8
    assert status.gpus_simulated
    assert node.holds_ca


async def test_a_node_without_gpus_starts_and_says_why(lab: Lab, ca_node: NodeProcess) -> None:
    token = lab.murmur("token", "create", "--node", ca_node.address).stdout.strip()
    plain = lab.start_node("plain", extra_args=["--join", ca_node.address, "--token", token])
    async with client_for(plain, lab.admin_identity) as client:
        node = await client.get_node("plain")
    assert node.gpus.source == types_pb2.GPU_SOURCE_NONE
    assert len(node.gpus.devices) == 0
    assert "NVML" in node.gpus.reason
    assert not node.holds_ca


async def test_health_and_reflection_answer_authenticated_callers(
    lab: Lab, ca_node: NodeProcess
) -> None:
    bundle = IdentityBundle.read(lab.admin_identity)
    async with mtls_channel(ca_node, bundle) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        stream = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        services = set()
        async for response in stream:
            services = {s.name for s in response.list_services_response.service}
            break
    assert {
        "murmur.v1.ClusterService",
        "murmur.v1.NodeService",
        "grpc.health.v1.Health",
    } <= services


async def test_roles_limit_what_callers_may_do(lab: Lab, ca_node: NodeProcess) -> None:
    viewer = lab.issue_identity("vera", Role.VIEWER)
    member = lab.issue_identity("max", Role.MEMBER)
    async with client_for(ca_node, viewer) as client:
        assert (await client.status()).nodes
        with pytest.raises(murmur.PermissionDenied, match="vera has role viewer"):
            await client.create_join_token()
    async with client_for(ca_node, member) as client:
        with pytest.raises(murmur.PermissionDenied):
            await client.list_audit()
    # A user certificate cannot speak the node-to-node protocol.
    async with mtls_channel(ca_node, IdentityBundle.read(member)) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await node_pb2_grpc.NodeServiceStub(channel).Ping(node_pb2.PingRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Refusals are audited with who, what and the result.
    async with client_for(ca_node, lab.admin_identity) as client:
        records = await client.list_audit(limit=50)
    refusals = [(r.user, r.action, r.result) for r in records]
    assert ("vera", "CreateJoinToken", "PERMISSION_DENIED") in refusals


async def test_sigterm_stops_cleanly_and_keeps_the_store(lab: Lab, ca_node: NodeProcess) -> None:
    async with client_for(ca_node, lab.admin_identity) as client:
        await client.create_join_token()
    assert ca_node.terminate() == 0
    assert '"event": "node.stopped"' in ca_node.log()
    async with await Store.open(ca_node.data_dir / "murmur.db") as store:
        records = await store.list_audit()
    assert [r.action for r in records] == ["CreateJoinToken"]
