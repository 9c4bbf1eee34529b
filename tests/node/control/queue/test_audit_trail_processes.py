"""One audit trail for the cluster, with real daemons and the CLI: calls through any
node, refusals included, are listed the same from every node, in the order they
were made, and an entry edited in a voter's SQLite file is found by `audit verify`."""

from __future__ import annotations

import json
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from murmur.certs import Role
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS, wait_agreed
from tests.support.cluster import start_cluster
from tests.support.nodes import Lab, NodeProcess

SLEEPER = "import time; time.sleep(300)"


def submit(lab: Lab, node: NodeProcess, identity: Path) -> str:
    result = lab.murmur(
        "job", "submit", "--runtime", "process", "--node", node.address,
        "--", sys.executable, "-c", SLEEPER,
        identity=identity,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def audit_json(lab: Lab, node: NodeProcess, *flags: str) -> list[dict[str, str]]:
    shown = lab.murmur("audit", "--json", "--node", node.address, *flags)
    assert shown.returncode == 0, shown.stderr
    return list(json.loads(shown.stdout).get("records", []))


def summary(records: list[dict[str, str]]) -> list[tuple[str, str, str, str, str]]:
    """(user, role, node, action, result) of the calls this test makes, in order."""
    wanted = {"SubmitJob", "CancelJob", "IssueUserCertificate"}
    return [
        (r["user"], r["role"], r["node"], r["action"], r["result"])
        for r in records
        if r["action"] in wanted
    ]


async def test_calls_through_any_node_are_one_verifiable_trail(lab: Lab) -> None:
    nodes = start_cluster(lab, 3, env=FAST_VOTERS)
    node1, node2, node3 = nodes
    await wait_agreed(nodes, lab, voters=3)
    member = lab.issue_identity("max", Role.MEMBER)
    viewer = lab.issue_identity("vera", Role.VIEWER)

    admins_job = submit(lab, node1, lab.admin_identity)
    job = submit(lab, node2, member)
    cancelled = lab.murmur("job", "cancel", job, "--node", node2.address, identity=member)
    assert cancelled.returncode == 0, cancelled.stderr
    not_theirs = lab.murmur("job", "cancel", admins_job, "--node", node2.address, identity=member)
    assert not_theirs.returncode != 0
    refused = lab.murmur(
        "job", "submit", "--runtime", "process", "--node", node3.address,
        "--", sys.executable, "-c", SLEEPER,
        identity=viewer,
    )  # fmt: skip
    assert refused.returncode != 0
    added = lab.murmur(
        "user", "add", "bob", "--role", "viewer", "--out", str(lab.root / "bob.pem"),
        "--node", node1.address,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    from_node3 = audit_json(lab, node3)
    assert summary(from_node3) == [
        ("admin", "ROLE_ADMIN", "node-1", "SubmitJob", "OK"),
        ("max", "ROLE_MEMBER", "node-2", "SubmitJob", "OK"),
        ("max", "ROLE_MEMBER", "node-2", "CancelJob", "OK"),
        ("max", "ROLE_MEMBER", "node-2", "CancelJob", "PERMISSION_DENIED"),
        ("vera", "ROLE_VIEWER", "node-3", "SubmitJob", "PERMISSION_DENIED"),
        ("admin", "ROLE_ADMIN", "node-1", "IssueUserCertificate", "OK"),
    ]
    assert all(r["hash"] for r in from_node3)
    # The same answer from another node, in the same order, hashes and all (calls the
    # nodes make meanwhile, e.g. for the CA's custody, come after: compare up to there).
    last = max(int(r["id"]) for r in from_node3)
    assert len(from_node3) < 50  # the whole trail, not a window of it
    assert [r for r in audit_json(lab, node1) if int(r["id"]) <= last] == from_node3
    # Filters, and the table a person reads.
    assert {r["user"] for r in audit_json(lab, node2, "--user", "max")} == {"max"}
    cancels = audit_json(lab, node2, "--action", "CancelJob")
    # Newest first on the wire; the CLI's --json prints the page oldest first.
    assert [(r["target"], r["result"]) for r in cancels] == [
        (job, "OK"),
        (admins_job, "PERMISSION_DENIED"),
    ]
    since = audit_json(lab, node1, "--since", "1h")
    assert [r for r in since if int(r["id"]) <= last] == from_node3
    table = lab.murmur("audit", "--node", node3.address)
    assert table.returncode == 0, table.stderr
    vera_line = next(line for line in table.stdout.splitlines() if " vera " in line)
    assert "viewer" in vera_line
    assert "node-3" in vera_line
    assert "PERMISSION_DENIED" in vera_line

    for node in nodes:
        verified = lab.murmur("audit", "verify", "--node", node.address)
        assert verified.returncode == 0, verified.stderr
        assert len(verified.stdout.strip().splitlines()) == 1
        assert f"intact on {node.name}" in verified.stdout

    # Someone with the disk turns the viewer's refusal into a success on node-3.
    vera_id = next(int(r["id"]) for r in from_node3 if r["user"] == "vera")
    assert node3.terminate() == 0
    with closing(sqlite3.connect(node3.data_dir / "murmur.db")) as db, db:
        db.execute("UPDATE audit_chain SET result = 'OK' WHERE seq = ?", (vera_id,))
    node3 = lab.restart(node3)
    broken = lab.murmur("audit", "verify", "--node", node3.address)
    assert broken.returncode != 0
    assert f"broken at entry {vera_id}" in broken.stderr, broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1
    # The other voters' copies still check.
    assert lab.murmur("audit", "verify", "--node", node1.address).returncode == 0
