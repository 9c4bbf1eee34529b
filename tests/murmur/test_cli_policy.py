"""`murmur policy apply|show` against a real node, a quota holding a job back, and
`murmur usage` counting the GPU time of the runs that ended."""

from __future__ import annotations

import json
import time
from pathlib import Path

from murmur.certs import Role
from tests.murmur.test_cli_jobs import wait_state
from tests.support.nodes import Lab, NodeProcess

POLICY = """# one user capped at four GPUs
[groups.nlp]
users = ["alice"]
gpus = 8

[users.alice]
gpus = 4
"""


def test_a_quota_holds_a_users_fifth_gpu_and_says_why(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    shown = lab.murmur("policy", "show", "--node", ca_node.address)
    assert shown.returncode == 0, shown.stderr
    assert "no policy applied" in shown.stderr

    typo = tmp_path / "typo.toml"
    typo.write_text("[users.alice]\ngpu = 4\n")
    refused = lab.murmur("policy", "apply", str(typo), "--node", ca_node.address)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        f"murmur: error: {typo}: unknown key users.alice.gpu (known here: gpus)"
    ]
    alice = lab.issue_identity("alice", Role.MEMBER)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    not_admin = lab.murmur("policy", "apply", str(policy), "--node", ca_node.address,
                           identity=alice)  # fmt: skip
    assert not_admin.returncode != 0
    assert "admin" in not_admin.stderr

    applied = lab.murmur("policy", "apply", str(policy), "--node", ca_node.address)
    assert applied.returncode == 0, applied.stderr
    assert "applied by admin" in applied.stderr
    shown = lab.murmur("policy", "show", "--node", ca_node.address, identity=alice)
    assert shown.stdout == POLICY

    ids = []
    for _ in range(5):
        submitted = lab.murmur(
            "job", "submit", "--runtime", "process", "--gpus", "1", "--cpus", "0.1",
            "--node", ca_node.address, "--", "sleep", "60", identity=alice,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        ids.append(submitted.stdout.strip())
    for job_id in ids[:4]:
        wait_state(lab, ca_node, job_id, {"JOB_STATE_RUNNING"})
    deadline = time.monotonic() + 30
    while True:
        fifth = json.loads(
            lab.murmur("job", "show", ids[4], "--json", "--node", ca_node.address).stdout
        )
        if fifth.get("reason") == "quota: user alice uses 4/4 GPUs":
            break
        if time.monotonic() > deadline:
            raise AssertionError(json.dumps(fifth, indent=1))
        time.sleep(0.2)
    assert fifth["state"] == "JOB_STATE_PENDING"
    listed = lab.murmur("job", "list", "--node", ca_node.address)
    assert "quota: user alice uses 4/4 GPUs" in listed.stdout
    # The cap is the policy's: cancelling one lets the fifth run.
    assert lab.murmur("job", "cancel", ids[0], "--node", ca_node.address).returncode == 0
    wait_state(lab, ca_node, ids[4], {"JOB_STATE_RUNNING"})
    for job_id in ids[1:]:
        lab.murmur("job", "cancel", job_id, "--node", ca_node.address)
    # The GPU time of the runs that ended is on record, from any node, for anyone.
    deadline = time.monotonic() + 30
    while True:
        usage = json.loads(
            lab.murmur("usage", "--json", "--node", ca_node.address, identity=alice).stdout
        )
        rows = {row["user"]: row for row in usage.get("rows", [])}
        if "alice" in rows and rows["alice"]["gpu_hours"] > 0:
            break
        if time.monotonic() > deadline:
            raise AssertionError(usage)
        time.sleep(0.2)
    assert rows["alice"]["group"] == "nlp"
    table = lab.murmur("usage", "--group", "nlp", "--node", ca_node.address)
    assert table.stdout.splitlines()[0].split() == ["USER", "GROUP", "GPU-HOURS"]
