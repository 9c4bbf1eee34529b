"""A group reclaims the quota it lent, on a real node: the borrowing job of the other
group of its cohort gets SIGTERM, is requeued with its attempt unspent, and later
finishes; its history names the job it was stopped for and why."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from murmur.certs import Role
from tests.murmur.test_cli_jobs import wait_state
from tests.murmur.test_cli_preemption import LOW
from tests.support.nodes import Lab, NodeProcess

POLICY = """
[groups.nlp]
users = ["alice"]
gpus = 4
cohort = "ml"

[groups.vision]
users = ["carol"]
gpus = 4
cohort = "ml"

[preemption]
reclaim_lent_quota = true
"""


def test_a_group_reclaims_its_lent_quota_from_the_borrower(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    applied = lab.murmur("policy", "apply", str(policy), "--node", ca_node.address)
    assert applied.returncode == 0, applied.stderr
    alice = lab.issue_identity("alice", Role.MEMBER)
    carol = lab.issue_identity("carol", Role.MEMBER)
    shared = Path(tempfile.mkdtemp(prefix="murmur-reclaim-"))
    os.chmod(shared, 0o777)  # the job's account writes its marker here
    try:
        reclaim_and_check(lab, ca_node, alice, carol, shared)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def reclaim_and_check(lab: Lab, node: NodeProcess, alice: Path, carol: Path, shared: Path) -> None:
    def submit(identity: Path, *args: str) -> str:
        done = lab.murmur(
            "job", "submit", "--runtime", "process", "--gpus", "4", "--cpus", "0.1",
            "--node", node.address, *args, identity=identity,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    own = submit(carol, "--", "sleep", "300")
    wait_state(lab, node, own, {"JOB_STATE_RUNNING"})
    # vision's own 4 GPUs are taken: this one borrows nlp's idle 4.
    borrow = submit(carol, "--env", f"DIR={shared}", "--shell", "--", LOW)
    wait_state(lab, node, borrow, {"JOB_STATE_RUNNING"})
    # alice's job comes first in queue order (a higher priority), so the borrower,
    # once requeued, does not take its room back.
    mine = submit(alice, "--priority", "10", "--", "sleep", "1")
    done = wait_state(lab, node, mine, {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"})
    assert done["state"] == "JOB_STATE_SUCCEEDED"
    finished = wait_state(lab, node, borrow, {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"})
    assert finished["state"] == "JOB_STATE_SUCCEEDED"
    assert (shared / "term").read_text().strip().startswith("grace=")
    history = " | ".join(str(event.get("message", "")) for event in finished["history"])  # type: ignore[union-attr]
    assert f"preempted by job {mine}: reclaiming quota lent by group nlp" in history
    assert "requeued" in history
    assert finished["attempts"] == 1  # the preempted run did not spend an attempt
    own_now = lab.murmur("job", "show", own, "--json", "--node", node.address)
    assert "preempted" not in own_now.stdout  # within vision's own quota: never stopped
    assert lab.murmur("job", "cancel", own, "--node", node.address).returncode == 0
