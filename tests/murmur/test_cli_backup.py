"""`murmur node backup` and `murmur node restore` against real daemons: "the server's
disk died" (docs/operations.md), for a lone server and for a voter of three."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from murmur.storage import Store
from tests.support.nodes import Lab, NodeProcess

FAST_VOTERS = {"MURMUR_NODE_VOTER_STABILIZATION_SECONDS": "0.5"}
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_LOST"}


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr


def _submit(lab: Lab, node: NodeProcess, *args: str) -> str:
    """Submits a process job and waits until it succeeded; returns its id."""
    submitted = lab.murmur(
        "job", "submit", "--runtime", "process", "--node", node.address,
        *args, "--", "sh", "-c", "echo done",
    )  # fmt: skip
    _ok(submitted)
    job = submitted.stdout.strip()

    def state() -> str:
        shown = lab.murmur("job", "show", job, "--json", "--node", node.address)
        return str(json.loads(shown.stdout)["state"]) if shown.returncode == 0 else ""

    _wait_for(lambda: state() in TERMINAL, f"job {job} to end")
    assert state() == "JOB_STATE_SUCCEEDED"
    return job


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_lone_server_restored_from_its_backup_comes_back_with_its_jobs(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    job = _submit(lab, ca_node)
    backup = tmp_path / "node-1.tar.gz"
    taken = lab.murmur("node", "backup", "--data-dir", str(ca_node.data_dir), "--out", str(backup))
    _ok(taken)  # online: the daemon runs on
    assert "backed up node node-1" in taken.stderr
    assert "a voter of 1" in taken.stderr

    in_use = lab.murmur("node", "restore", str(backup), "--data-dir", str(ca_node.data_dir))
    assert in_use.returncode == 1
    assert f"pid {ca_node.process.pid}" in in_use.stderr, in_use.stderr
    assert "in use" in in_use.stderr

    ca_node.kill()  # the disk dies with the server
    shutil.rmtree(ca_node.data_dir)
    flipped = tmp_path / "flipped.tar.gz"
    data = bytearray(backup.read_bytes())
    data[len(data) // 3] ^= 0x10
    flipped.write_bytes(data)
    refused = lab.murmur("node", "restore", str(flipped), "--data-dir", str(ca_node.data_dir))
    assert refused.returncode == 1
    assert "is not an intact murmur backup" in refused.stderr
    assert not ca_node.data_dir.exists(), "nothing restored from a damaged backup"

    ask = lab.murmur("node", "restore", str(backup), "--data-dir", str(ca_node.data_dir))
    assert ask.returncode == 1, "its only voter: the user says which restore they mean"
    assert "--raft keep" in ask.stderr
    restored = lab.murmur(
        "node", "restore", str(backup), "--data-dir", str(ca_node.data_dir), "--raft", "keep"
    )
    _ok(restored)
    again = lab.murmur(
        "node", "restore", str(backup), "--data-dir", str(ca_node.data_dir), "--raft", "keep"
    )
    assert again.returncode == 1
    assert "is not empty" in again.stderr
    forced = lab.murmur(
        "node", "restore", str(backup), "--data-dir", str(ca_node.data_dir),
        "--raft", "keep", "--force",
    )  # fmt: skip
    _ok(forced)

    back = lab.restart(ca_node)
    listed = json.loads(lab.murmur("job", "list", "--json", "--node", back.address).stdout)
    assert [(j["id"], j["state"]) for j in listed["jobs"]] == [(job, "JOB_STATE_SUCCEEDED")]
    assert "answered by node node-1" in lab.murmur("whoami", "--node", back.address).stdout
    # Its CA came back too: it admits a new server.
    _ok(lab.murmur("token", "create", "--node", back.address))
    _submit(lab, back)


def test_a_voter_restored_from_its_backup_catches_up_before_it_votes_again(
    lab: Lab, tmp_path: Path
) -> None:
    first = lab.start_node("node-1", data_dir=lab.first_data_dir, env=FAST_VOTERS)
    nodes = [first]
    for name in ("node-2", "node-3"):
        token = lab.murmur("token", "create", "--node", first.address).stdout.strip()
        extra = ["--join", first.join_address, "--token", token]
        if name == "node-3":
            extra += ["--simulate-gpus", "1xA100-80GB"]
        nodes.append(lab.start_node(name, extra_args=extra, env=FAST_VOTERS))
    node3 = nodes[2]

    def voters() -> list[str]:
        listed = lab.murmur("node", "list", "--json", "--node", first.address).stdout
        return sorted(n["name"] for n in json.loads(listed)["nodes"] if n.get("voter"))

    _wait_for(lambda: voters() == ["node-1", "node-2", "node-3"], "three voters")
    ran_here = _submit(lab, first, "--gpus", "1")  # node-3 has the only GPU
    backup = tmp_path / "node-3.tar.gz"
    taken = lab.murmur("node", "backup", "--data-dir", str(node3.data_dir), "--out", str(backup))
    _ok(taken)
    assert "a voter of 3" in taken.stderr
    later = _submit(lab, first)  # after the backup: node-3 acknowledged it, then lost it

    node3.kill()
    shutil.rmtree(node3.data_dir)
    _ok(lab.murmur("node", "restore", str(backup), "--data-dir", str(node3.data_dir)))
    node3 = lab.restart(node3)

    def rejoined() -> bool:
        return '"event": "consensus.rejoined"' in node3.log()

    _wait_for(rejoined, "node-3 to catch up")
    events = [r["event"] for r in node3.log_records() if str(r.get("event", "")).startswith("c")]
    assert events.index("consensus.rejoining") < events.index("consensus.rejoined")
    loaded = next(r for r in node3.log_records() if r.get("event") == "consensus.loaded")
    assert (loaded["rejoining"], loaded["entries"], loaded["term"]) == (True, 0, 0)
    _wait_for(lambda: voters() == ["node-1", "node-2", "node-3"], "node-3 to vote again")
    # As itself: same name and certificate; the cluster's jobs from its own replica.
    assert "answered by node node-3" in lab.murmur("whoami", "--node", node3.address).stdout
    listed = json.loads(lab.murmur("job", "list", "--json", "--node", node3.address).stdout)
    assert {ran_here, later} <= {j["id"] for j in listed["jobs"]}
    assert node3.terminate() == 0
    # Its own history: the run it ran, kept in its store by the backup.
    assert (ran_here, "succeeded") in asyncio.run(_runs_in(node3.data_dir / "murmur.db"))


async def _runs_in(path: Path) -> list[tuple[str, str]]:
    async with await Store.open(path) as store:
        return [(run.job_id, run.state) for run in await store.list_runs()]
