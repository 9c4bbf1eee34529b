"""A job of a higher tier preempts a lower one on a real node: the victim gets
SIGTERM (and its grace in MURMUR_STOP_GRACE_SECONDS; the deadline and the reason in
the file MURMUR_PREEMPT_DEADLINE names, written before the signal, absent before the
stop), is requeued with its attempt unspent, and later finishes; the preemption is
in its history, naming who and why."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from tests.murmur.test_cli_jobs import wait_state
from tests.support.nodes import Lab, NodeProcess

POLICY = """
[tiers]
urgent = 100
normal = 50
default = "normal"

[queues.deadline]
tier = "urgent"

[preemption]
tiers = true
"""

LOW = (
    'if [ -e "$DIR/term" ]; then echo second run; exit 0; fi; '
    'trap \'echo "grace=$MURMUR_STOP_GRACE_SECONDS" > "$DIR/term"; '
    'cat "$MURMUR_PREEMPT_DEADLINE" > "$DIR/notice"; exit 0\' TERM; '
    'if [ -e "$MURMUR_PREEMPT_DEADLINE" ]; then echo early > "$DIR/notice"; fi; '
    "echo first run; sleep 300 & wait"
)


def shown(lab: Lab, node: NodeProcess, job_id: str) -> dict[str, object]:
    result = lab.murmur("job", "show", job_id, "--json", "--node", node.address)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_higher_tier_preempts_a_lower_one_which_requeues_and_finishes(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    applied = lab.murmur("policy", "apply", str(policy), "--node", ca_node.address)
    assert applied.returncode == 0, applied.stderr
    shared = Path(tempfile.mkdtemp(prefix="murmur-preempt-"))
    os.chmod(shared, 0o777)  # the job's account writes its marker here
    try:
        preempt_and_check(lab, ca_node, shared)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def preempt_and_check(lab: Lab, ca_node: NodeProcess, shared: Path) -> None:
    low = lab.murmur(
        "job", "submit", "--runtime", "process", "--gpus", "8", "--cpus", "0.1",
        "--env", f"DIR={shared}", "--node", ca_node.address, "--shell", "--", LOW,
    )  # fmt: skip
    assert low.returncode == 0, low.stderr
    low_id = low.stdout.strip()
    wait_state(lab, ca_node, low_id, {"JOB_STATE_RUNNING"})
    time.sleep(0.5)  # let the shell set its trap
    before_stop = time.time()
    high = lab.murmur(
        "job", "submit", "--runtime", "process", "--gpus", "8", "--cpus", "0.1",
        "--queue", "deadline", "--node", ca_node.address, "--", "sleep", "1",
    )  # fmt: skip
    assert high.returncode == 0, high.stderr
    high_id = high.stdout.strip()
    done = wait_state(lab, ca_node, high_id, {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"})
    assert done["state"] == "JOB_STATE_SUCCEEDED"
    finished = wait_state(lab, ca_node, low_id, {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"})
    assert finished["state"] == "JOB_STATE_SUCCEEDED"
    assert (shared / "term").read_text().strip().startswith("grace=")
    deadline, reason = (shared / "notice").read_text().splitlines()
    assert before_stop < float(deadline) < time.time() + 60  # the stop, plus its grace
    assert reason.startswith(f"preempted by job {high_id}")
    history = " | ".join(str(event.get("message", "")) for event in finished["history"])  # type: ignore[union-attr]
    assert f"preempted by job {high_id}" in history
    assert "requeued" in history
    assert finished["attempts"] == 1  # the preempted run did not spend an attempt
