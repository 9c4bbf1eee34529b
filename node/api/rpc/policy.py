"""Which roles may call which RPC, and which calls change state (and are audited).

Default deny: a method missing from this table is refused for everyone, so a
new RPC cannot ship open by accident (a test walks every method of the
contract and checks it is listed).
"""

from __future__ import annotations

from dataclasses import dataclass

from murmur.certs import Role

_READERS = frozenset({Role.VIEWER, Role.MEMBER, Role.ADMIN, Role.NODE})
_WRITERS = frozenset({Role.MEMBER, Role.ADMIN})
_ADMINS = frozenset({Role.ADMIN})
_NODES = frozenset({Role.NODE})


@dataclass(frozen=True)
class MethodPolicy:
    """Who may call a method, and whether a call is recorded in the audit log."""

    allowed_roles: frozenset[Role]
    audited: bool


def _read() -> MethodPolicy:
    return MethodPolicy(_READERS, audited=False)


def _write(roles: frozenset[Role] = _WRITERS) -> MethodPolicy:
    return MethodPolicy(roles, audited=True)


_CLUSTER = "/murmur.v1.ClusterService/"
_NODE = "/murmur.v1.NodeService/"
_TRUST = "/murmur.v1.TrustService/"

POLICIES: dict[str, MethodPolicy] = {
    _CLUSTER + "WhoAmI": _read(),
    _CLUSTER + "GetStatus": _read(),
    _CLUSTER + "ListNodes": _read(),
    _CLUSTER + "GetNode": _read(),
    _CLUSTER + "WatchNodes": _read(),
    _CLUSTER + "DrainNode": _write(_ADMINS),
    _CLUSTER + "RemoveNode": _write(_ADMINS),
    _CLUSTER + "SubmitJob": _write(),
    _CLUSTER + "SubmitJobs": _write(),
    _CLUSTER + "ListJobs": _read(),
    _CLUSTER + "GetJob": _read(),
    _CLUSTER + "CancelJob": _write(),
    _CLUSTER + "WatchJobs": _read(),
    _CLUSTER + "StreamLogs": _read(),
    _CLUSTER + "AddDataset": _write(),
    _CLUSTER + "AddDatasetWithProgress": _write(),
    _CLUSTER + "ListDatasets": _read(),
    _CLUSTER + "GetDataset": _read(),
    # The user who added a dataset, or an admin (the holding node checks whose).
    _CLUSTER + "RemoveDataset": _write(),
    _CLUSTER + "WatchEvents": _read(),
    _CLUSTER + "ListAudit": MethodPolicy(_ADMINS, audited=False),
    _CLUSTER + "VerifyAudit": MethodPolicy(_ADMINS, audited=False),
    _CLUSTER + "CreateJoinToken": _write(_ADMINS),
    _CLUSTER + "IssueUserCertificate": _write(_ADMINS),
    # Revocations: an admin revokes (audited); nodes pull the list from each other.
    _CLUSTER + "RevokeCertificate": _write(_ADMINS),
    _CLUSTER + "ListRevocations": MethodPolicy(_ADMINS | _NODES, audited=False),
    # The lab's users are no secret to its members: anyone lists them; serials,
    # issuers and revocation details are cleared for all but admins (and nodes,
    # which relay a listing to the leader).
    _CLUSTER + "ListUsers": _read(),
    _CLUSTER + "RotateCa": _write(_ADMINS),
    _CLUSTER + "ApplyPolicy": _write(_ADMINS),
    _CLUSTER + "GetPolicy": _read(),
    _CLUSTER + "GetUsage": _read(),
    # Services: a member creates, scales and deletes their own (the state checks
    # whose), an admin any; anyone reads them.
    _CLUSTER + "CreateService": _write(),
    _CLUSTER + "ScaleService": _write(),
    _CLUSTER + "UpdateService": _write(),
    _CLUSTER + "DeleteService": _write(),
    _CLUSTER + "ListServices": _read(),
    _CLUSTER + "GetService": _read(),
    # API keys: a member creates their own and lists and revokes their own (the
    # handler and the state check whose), an admin anyone's; a viewer may list
    # (their own: none). A node relays a listing to the leader.
    _CLUSTER + "CreateApiKey": _write(),
    _CLUSTER + "ListApiKeys": _read(),
    _CLUSTER + "RevokeApiKey": _write(),
    _NODE + "Ping": MethodPolicy(_NODES, audited=False),
    _NODE + "Describe": MethodPolicy(_NODES, audited=False),
    _NODE + "Gossip": MethodPolicy(_NODES, audited=False),
    _NODE + "Raft": MethodPolicy(_NODES, audited=False),
    # A stream of requests: the interceptors check the caller before one is read.
    _NODE + "RaftStream": MethodPolicy(_NODES, audited=False),
    # Machine traffic of the replicated queue: the user's change was audited where
    # the user made it (the node the client reached).
    _NODE + "Propose": MethodPolicy(_NODES, audited=False),
    _NODE + "StartRun": MethodPolicy(_NODES, audited=False),
    _NODE + "StopRun": MethodPolicy(_NODES, audited=False),
    _NODE + "ListRuns": MethodPolicy(_NODES, audited=False),
    _NODE + "ReportRun": MethodPolicy(_NODES, audited=False),
    _NODE + "ForgetVoter": MethodPolicy(_NODES, audited=False),
    # An admin's audit reads, relayed to the leader (the relaying node checked the admin).
    _NODE + "ListAudit": MethodPolicy(_NODES, audited=False),
    _NODE + "VerifyAudit": MethodPolicy(_NODES, audited=False),
    # A router that follows no log pulls the API key table (hashes) from a voter.
    _NODE + "ListApiKeyHashes": MethodPolicy(_NODES, audited=False),
    # A change to the node: audited, with the forwarding node as the caller (the
    # admin's name is in the request and in the forwarding node's own audit log).
    _NODE + "SetDraining": _write(_NODES),
    _NODE + "RemoveDataset": _write(_NODES),
    # The lab CA key handed to a voter, a node's own renewal, a relayed user
    # certificate (node/api/services/trust.py): audited on the signing node.
    _TRUST + "FetchCaKey": _write(_NODES),
    _TRUST + "RenewNodeCertificate": _write(_NODES),
    _TRUST + "IssueUserCertificate": _write(_NODES),
    _TRUST + "StartCaRotation": _write(_NODES),
    # Standard services every authenticated caller may use.
    "/grpc.health.v1.Health/Check": _read(),
    "/grpc.health.v1.Health/Watch": _read(),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": _read(),
}


def policy_for(method: str) -> MethodPolicy | None:
    """The policy of a full method name (``/pkg.Service/Method``); ``None``: refuse."""
    return POLICIES.get(method)
