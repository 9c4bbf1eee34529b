"""`murmur apikey ...` in subprocesses, against a real node: create prints only the
key; names are unique per owner; members see and revoke their own, admins anyone's,
viewers make none; a whole key pasted to revoke is taken for its id; bad input is one
line on stderr; the key is in no listing, audit entry or node log."""

from __future__ import annotations

import asyncio
import hashlib
import json

import grpc
import grpc.aio
import pytest

from murmur.certs import IdentityBundle, Role
from murmur.v1 import apikeys_pb2, node_pb2_grpc
from tests.support.cluster import mtls_channel
from tests.support.nodes import Lab, NodeProcess, read_bundle


def test_keys_are_created_listed_and_revoked_by_whom_they_may_be(
    lab: Lab, ca_node: NodeProcess
) -> None:
    alice = lab.issue_identity("alice", Role.MEMBER)
    bob = lab.issue_identity("bob", Role.MEMBER)
    ada = lab.issue_identity("ada", Role.VIEWER)
    node = ("--node", ca_node.address)

    created = lab.murmur(
        "apikey", "create", "--name", "eval", "--models", "toy-llm,other", "--rpm", "60",
        "--expires", "30d", *node, identity=alice,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n"  # the key alone: KEY=$(murmur apikey create ...)
    assert key.startswith("mur_")
    key_id = key.split("_")[1]
    assert f"created API key eval (id {key_id}) for alice" in created.stderr

    for identity, args, says in [
        (alice, ("--name", "eval"), "alice already has an API key named 'eval'"),
        (alice, ("--name", "has space"), "the key name 'has space' is invalid"),
        (ada, ("--name", "mine"), "ada has role viewer; CreateApiKey needs one of: admin, member"),
    ]:
        refused = lab.murmur("apikey", "create", *args, *node, identity=identity)
        assert refused.returncode == 1, refused.stdout
        assert refused.stdout == ""
        [line] = refused.stderr.strip().splitlines()
        assert line.startswith(f"murmur: error: {says}")
    bad_expiry = lab.murmur("apikey", "create", "--name", "x", "--expires", "soon", *node)
    assert bad_expiry.returncode == 2
    assert lab.murmur("apikey", "create", "--name", "ci", *node, identity=bob).returncode == 0

    listing = lab.murmur("apikey", "list", *node, identity=alice)
    assert listing.returncode == 0, listing.stderr
    header, row = listing.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "ID", "OWNER", "MODELS"]
    assert row.split()[:6] == ["eval", key_id, "alice", "toy-llm,other", "60", row.split()[5]]
    assert row.split()[-1] == "active"
    as_json = json.loads(lab.murmur("apikey", "list", "--json", *node, identity=alice).stdout)
    assert (as_json["id"], as_json["models"], as_json["rpm"]) == (key_id, ["toy-llm", "other"], 60)
    assert "expires_at" in as_json
    everyone = lab.murmur("apikey", "list", *node).stdout  # the admin
    assert {line.split()[0] for line in everyone.splitlines()[1:]} == {"eval", "ci"}
    others = lab.murmur("apikey", "list", "--user", "alice", *node, identity=bob)
    assert others.returncode == 1
    assert "only an admin may see another user's API keys" in others.stderr

    asyncio.run(a_router_off_the_log_pulls_hashes_only(lab, ca_node, key))

    usage = lab.murmur("apikey", "usage", *node, identity=alice)
    assert usage.stdout.splitlines()[1].split() == ["eval", key_id, "alice", "0", "0", "0", "never"]

    not_theirs = lab.murmur("apikey", "revoke", "--id", key_id, *node, identity=bob)
    assert not_theirs.returncode == 1
    assert "is alice's; only they or an admin may revoke it" in not_theirs.stderr
    missing = lab.murmur("apikey", "revoke", "nope", *node, identity=alice)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "murmur: error: alice has no API key named 'nope'"
    # A leaked key, pasted whole: revoked by its id, its secret sent nowhere.
    revoked = lab.murmur("apikey", "revoke", key, "--json", *node)
    assert revoked.returncode == 0, revoked.stderr
    shown = json.loads(revoked.stdout)
    assert (shown["id"], shown["revoked_by"]) == (key_id, "admin")
    assert (
        lab.murmur("apikey", "list", *node, identity=alice)
        .stdout.splitlines()[1]
        .endswith("revoked by admin")
    )
    # The name is free again once its key is revoked.
    again = lab.murmur("apikey", "create", "--name", "eval", *node, identity=alice)
    assert again.returncode == 0, again.stderr

    audit = lab.murmur("audit", "--json", *node)
    assert audit.returncode == 0, audit.stderr
    records = json.loads(audit.stdout)["records"]
    actions = {(r["action"].rsplit("/", 1)[-1], r["target"]) for r in records}
    assert ("CreateApiKey", "eval") in actions
    assert ("RevokeApiKey", key_id) in actions
    secret = key.split("_", 2)[2]
    assert secret not in audit.stdout
    assert secret not in ca_node.log_path.read_text()


async def a_router_off_the_log_pulls_hashes_only(lab: Lab, node: NodeProcess, key: str) -> None:
    """NodeService.ListApiKeyHashes, as a router that follows no log asks a voter:
    the hashes, no usage, nothing when unchanged; only a node may ask."""
    key_id, secret = key.split("_", 2)[1:]
    as_node = read_bundle(node.data_dir / "identity.pem")
    async with mtls_channel(node, as_node) as channel:
        stub = node_pb2_grpc.NodeServiceStub(channel)
        table = await stub.ListApiKeyHashes(apikeys_pb2.ListApiKeyHashesRequest(), timeout=5)
        [pulled] = [k for k in table.keys if k.id == key_id]
        assert pulled.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in str(table)
        again = await stub.ListApiKeyHashes(
            apikeys_pb2.ListApiKeyHashesRequest(known_revision=table.revision), timeout=5
        )
        assert again.unchanged
        assert not again.keys
    as_admin = IdentityBundle.read(lab.admin_identity)
    async with mtls_channel(node, as_admin) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await node_pb2_grpc.NodeServiceStub(channel).ListApiKeyHashes(
                apikeys_pb2.ListApiKeyHashesRequest(), timeout=5
            )
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
