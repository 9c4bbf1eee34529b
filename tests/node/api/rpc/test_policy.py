"""Every RPC of the contract has an explicit access policy (default deny)."""

from __future__ import annotations

from murmur.certs import Role
from murmur.node.api.rpc.policy import POLICIES, policy_for
from murmur.v1 import cluster_pb2, node_pb2


def _methods(file_descriptor: object, service: str) -> list[str]:
    descriptor = file_descriptor.services_by_name[service]  # type: ignore[attr-defined]
    return [f"/{descriptor.full_name}/{m.name}" for m in descriptor.methods]


def test_every_contract_method_has_a_policy() -> None:
    methods = _methods(cluster_pb2.DESCRIPTOR, "ClusterService") + _methods(
        node_pb2.DESCRIPTOR, "NodeService"
    )
    missing = [m for m in methods if m not in POLICIES]
    assert not missing


def test_unknown_methods_are_refused() -> None:
    assert policy_for("/murmur.v1.ClusterService/Nope") is None


def test_users_cannot_call_node_service_and_nodes_cannot_administer() -> None:
    ping = policy_for("/murmur.v1.NodeService/Ping")
    assert ping is not None
    assert ping.allowed_roles == {Role.NODE}
    for admin_only in ("CreateJoinToken", "IssueUserCertificate", "DrainNode", "ListAudit"):
        policy = policy_for(f"/murmur.v1.ClusterService/{admin_only}")
        assert policy is not None
        assert policy.allowed_roles == {Role.ADMIN}


def test_viewers_only_read() -> None:
    for method, policy in POLICIES.items():
        if policy.audited:
            assert Role.VIEWER not in policy.allowed_roles, method
