"""A node ships only the audited calls it took itself (NodeService.Propose)."""

from __future__ import annotations

from murmur.node.api.services.peer import _audit_of_another_node
from murmur.node.control.queue.audit_chain import AuditCall
from murmur.node.control.queue.commands import RecordAudit, SetNodeDrain
from murmur.node.errors import PermissionDeniedError


def call(node: str) -> AuditCall:
    return AuditCall(1, node, 10, "max", "member", "SubmitJob", "job-1", "OK", "")


def test_a_node_records_its_own_calls_only() -> None:
    assert _audit_of_another_node(RecordAudit("node-2/x", (call("node-2"),)), "node-2") is None
    assert _audit_of_another_node(SetNodeDrain("node-3", True, "admin", 1), "node-2") is None
    forged_origin = RecordAudit("node-3/x", (call("node-2"),))
    forged_call = RecordAudit("node-2/x", (call("node-2"), call("node-1")))
    prefix = RecordAudit("node-2x/x", (call("node-2"),))
    for forged in (forged_origin, forged_call, prefix):
        assert isinstance(_audit_of_another_node(forged, "node-2"), PermissionDeniedError)
