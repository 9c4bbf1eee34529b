"""A node, the CLI against it and one process job, run as one program so that a test
can run all of it inside a network namespace with only loopback, under ``strace``
(tests/murmur/test_nothing_reaches_out.py).

``python -m tests.support.offline_run DIR`` starts a lab in DIR, runs what a user
would (status, submit, show, logs, node list), stops the node with SIGTERM and
writes ``DIR/result.json``. Every step is bounded; it exits 0 when the result is
written, whatever it holds: the test judges it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tests.support.nodes import Lab, create_lab

ENDED = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_LOST"}


def main(root: Path) -> int:
    lab = create_lab(root)
    result: dict[str, object] = {}
    try:
        node = lab.start_node("node-1", data_dir=lab.first_data_dir)
        result["address"] = node.address
        status = lab.murmur("status", "--node", node.address, timeout=30)
        result["status"] = [status.returncode, status.stdout, status.stderr]
        submitted = lab.murmur(
            "job", "submit", "--runtime", "process", "--node", node.address,
            "--", "sh", "-c", "echo offline-ok",
            timeout=30,
        )  # fmt: skip
        result["submit"] = [submitted.returncode, submitted.stdout, submitted.stderr]
        if submitted.returncode == 0:
            job = submitted.stdout.strip()
            result["job_state"] = _wait_until_ended(lab, node.address, job)
            shown = lab.murmur("job", "show", job, "--node", node.address, timeout=30)
            result["job"] = shown.stdout
            logs = lab.murmur("job", "logs", job, "--node", node.address, timeout=30)
            result["logs"] = [logs.returncode, logs.stdout, logs.stderr]
        listed = lab.murmur("node", "list", "--node", node.address, timeout=30)
        result["node_list"] = [listed.returncode, listed.stdout, listed.stderr]
        result["exit_code"] = node.terminate(timeout=20)
    finally:
        lab.stop_all()
        result["node_log"] = (root / "node-1.log").read_text(errors="replace")[-20_000:]
        (root / "result.json").write_text(json.dumps(result))
    return 0


def _wait_until_ended(lab: Lab, address: str, job: str) -> str:
    """The job's state once it ended, or the last one seen after 30 s."""
    deadline = time.monotonic() + 30
    state = ""
    while time.monotonic() < deadline:
        shown = lab.murmur("job", "show", job, "--json", "--node", address, timeout=30)
        if shown.returncode == 0:
            state = str(json.loads(shown.stdout)["state"])
            if state in ENDED:
                break
        time.sleep(0.1)
    return state


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
