"""What the audit trail names as a call's target: an API key pasted whole where its
id belongs is written as its id, so the trail never holds a key."""

from __future__ import annotations

from murmur.node.api.rpc.interceptors import _audit_target
from murmur.node.control.queue.api_keys import new_key
from murmur.v1 import apikeys_pb2, cluster_pb2


def test_a_whole_api_key_is_audited_as_its_id() -> None:
    key_id, secret, key = new_key()
    target = _audit_target(apikeys_pb2.RevokeApiKeyRequest(id=key))
    assert target == key_id
    assert secret not in target
    assert _audit_target(apikeys_pb2.RevokeApiKeyRequest(name="eval")) == "eval"
    assert _audit_target(apikeys_pb2.CreateApiKeyRequest(name="eval", models=["m"])) == "eval"
    assert _audit_target(cluster_pb2.GetJobRequest(id="j-1")) == "j-1"
