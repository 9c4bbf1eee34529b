"""`murmur user list` and `murmur dataset remove` end to end, against one real node
shared by the file's tests (CI time: a node start is the costly part)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from murmur.certs import Role
from tests.murmur.test_cli_jobs import wait_state
from tests.support.nodes import Lab, NodeProcess, lab_fixture


@dataclass
class OneNode:
    lab: Lab
    node: NodeProcess


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneNode]:
    """A node holding the lab CA, with a simulated GPU inventory."""
    for lab in lab_fixture(tmp_path_factory.mktemp("lab")):
        node = lab.start_node(
            "node-1", data_dir=lab.first_data_dir, extra_args=["--simulate-gpus", "2xA100-80GB"]
        )
        yield OneNode(lab, node)


def test_user_list_shows_the_certificates_the_node_issued(
    one_node: OneNode, tmp_path: Path
) -> None:
    lab, address = one_node.lab, one_node.node.address
    bundle = tmp_path / "carol.identity.pem"
    for command in (
        ("user", "add", "carol", "--role", "member", "--out", str(bundle)),
        ("user", "add", "dave", "--role", "viewer", "--out", str(tmp_path / "dave.pem")),
        ("user", "renew", "carol", "--out", str(bundle)),
        ("cert", "revoke", "dave", "--reason", "left the lab"),
    ):
        done = lab.murmur(*command, "--node", address)
        assert done.returncode == 0, (command, done.stderr)

    listed = json.loads(lab.murmur("user", "list", "--json", "--node", address).stdout)
    users = {c["name"]: c for c in listed["certificates"]}
    assert sorted(users) == ["carol", "dave"]  # each user's newest certificate
    assert users["carol"]["role"] == "ROLE_MEMBER"
    assert users["carol"]["issued_by"] == "admin"
    assert len(users["carol"]["serial"]) > 8
    assert not users["carol"].get("revoked")
    assert users["dave"]["revoked"] is True
    assert users["dave"]["revoke_reason"] == "left the lab"
    every = json.loads(lab.murmur("user", "list", "--all", "--json", "--node", address).stdout)
    assert [c["name"] for c in every["certificates"]] == ["carol", "dave", "carol"]

    text = lab.murmur("user", "list", "--node", address)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:2] == ["USER", "ROLE"]
    assert "SERIAL" in lines[0]
    assert any(line.startswith("carol") and "valid" in line for line in lines)
    assert any(line.startswith("dave") and "revoked" in line for line in lines)

    # A member sees who is in the lab, not serials, issuers or why one was revoked.
    as_member = json.loads(
        lab.murmur("user", "list", "--json", "--node", address, identity=bundle).stdout
    )
    assert as_member["details_withheld"] is True
    for certificate in as_member["certificates"]:
        withheld = ("serial", "issued_by", "revoke_reason", "revoked_by")
        assert not any(certificate.get(field) for field in withheld), certificate
    assert "SERIAL" not in lab.murmur("user", "list", "--node", address, identity=bundle).stdout


def test_dataset_remove_unregisters_but_keeps_the_files_and_spares_mounted_ones(
    one_node: OneNode,
) -> None:
    lab, node = one_node.lab, one_node.node
    address = node.address
    alice = lab.issue_identity("alice", Role.MEMBER)
    bob = lab.issue_identity("bob", Role.MEMBER)
    data = node.data_dir / "datasets" / "corpus"
    data.mkdir(parents=True)
    (data / "a.txt").write_text("hello\n")
    added = lab.murmur(
        "dataset", "add", str(data), "--name", "corpus", "--node", address, identity=alice
    )
    assert added.returncode == 0, added.stderr

    missing = lab.murmur("dataset", "remove", "nope", "--node", address)
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines() == [
        "murmur: error: no dataset named 'nope' on any node"
    ]
    not_theirs = lab.murmur("dataset", "remove", "corpus", "--node", address, identity=bob)
    assert not_theirs.returncode != 0
    assert "added by alice" in not_theirs.stderr

    job_id = lab.murmur(
        "job", "submit", "--runtime", "process", "--dataset", "corpus", "--node", address,
        "--", "sleep", "60", identity=alice,
    ).stdout.strip()  # fmt: skip
    wait_state(lab, node, job_id, {"JOB_STATE_RUNNING"})
    mounted = lab.murmur("dataset", "remove", "corpus", "--node", address, identity=alice)
    assert mounted.returncode != 0
    assert len(mounted.stderr.strip().splitlines()) == 1
    assert f"mounted by running job(s) {job_id}" in mounted.stderr

    assert lab.murmur("job", "cancel", job_id, "--node", address).returncode == 0
    wait_state(lab, node, job_id, {"JOB_STATE_CANCELLED"})
    removed = lab.murmur("dataset", "remove", "corpus", "--node", address, "--json", identity=alice)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout)["name"] == "corpus"
    assert (data / "a.txt").read_text() == "hello\n"  # the files stay
    listed = json.loads(lab.murmur("dataset", "list", "--json", "--node", address).stdout)
    assert listed == {"datasets": []}
    again = lab.murmur("dataset", "remove", "corpus", "--node", address)
    assert again.returncode != 0
