"""The `murmur` command line end to end, in subprocesses, against real nodes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from murmur._cli.accounts import own_account_name
from murmur.certs import IdentityBundle, Role
from tests.support.nodes import Lab, NodeProcess, free_port
from tests.support.signals import interruptible


def _processes() -> dict[int, str]:
    """Every process's command line by pid, as ``ps`` shows it to any account."""
    lines = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            lines[int(entry.name)] = raw.replace(b"\0", b" ").decode(errors="replace")
    return lines


def _command_lines() -> list[str]:
    return list(_processes().values())


def test_ca_init_writes_the_ca_and_an_admin_identity_then_refuses_to_overwrite(
    tmp_path: Path, lab: Lab
) -> None:
    data_dir = tmp_path / "first"
    result = lab.murmur("ca", "init", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    identity = tmp_path / "home" / "identity.pem"
    bundle = IdentityBundle.read(identity)
    assert bundle.identity.role is Role.ADMIN
    # Named after the Unix account that ran it: that admin's jobs run as that account.
    assert bundle.identity.name == own_account_name()
    assert identity.stat().st_mode & 0o777 == 0o600
    assert (data_dir / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    again = lab.murmur("ca", "init", "--data-dir", str(data_dir))
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"murmur: error: a CA already exists in {data_dir / 'ca'}"
    ]


def test_listings_print_protobuf_json_with_snake_case_names(lab: Lab, ca_node: NodeProcess) -> None:
    status = json.loads(lab.murmur("status", "--json", "--node", ca_node.address).stdout)
    assert status["answered_by"] == "node-1"
    assert status["gpus_total"] == 8
    nodes = json.loads(lab.murmur("node", "list", "--json", "--node", ca_node.address).stdout)
    gpu = nodes["nodes"][0]["gpus"]["devices"][0]
    assert gpu["index"] == 0, "zero values are printed, not omitted"
    assert gpu["simulated"] is True
    shown = json.loads(
        lab.murmur("node", "show", "node-1", "--json", "--node", ca_node.address).stdout
    )
    assert shown["name"] == "node-1"


def test_human_output_labels_simulated_gpus(lab: Lab, ca_node: NodeProcess) -> None:
    status = lab.murmur("status", "--node", ca_node.address)
    assert status.returncode == 0, status.stderr
    assert "8/8 free (simulated)" in status.stdout
    assert ca_node.address in status.stdout
    show = lab.murmur("node", "show", "node-1", "--node", ca_node.address).stdout
    assert "gpu 7: A100 80GiB GPU-SIM-A100-7 (simulated)" in show


def test_user_add_issues_an_identity_that_works_with_its_role(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    out = tmp_path / "ada.pem"
    result = lab.murmur(
        "user", "add", "ada", "--role", "viewer", "--out", str(out), "--node", ca_node.address
    )
    assert result.returncode == 0, result.stderr
    assert IdentityBundle.read(out).identity.role is Role.VIEWER
    whoami = lab.murmur("whoami", "--node", ca_node.address, identity=out)
    assert whoami.stdout.startswith("ada (viewer)")
    denied = lab.murmur("token", "create", "--node", ca_node.address, identity=out)
    assert denied.returncode == 1
    assert denied.stdout == ""
    assert denied.stderr.strip().splitlines() == [
        "murmur: error: ada has role viewer; CreateJoinToken needs one of: admin"
    ]
    bad_role = lab.murmur("user", "add", "bob", "--role", "root", "--node", ca_node.address)
    assert bad_role.returncode == 2


def test_an_unreachable_node_is_one_line(lab: Lab) -> None:
    result = lab.murmur("status", "--node", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "cannot reach node" in lines[0]


def test_a_missing_identity_is_one_line(lab: Lab, ca_node: NodeProcess, tmp_path: Path) -> None:
    result = lab.murmur("status", "--node", ca_node.address, identity=tmp_path / "nope.pem")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "nope.pem" in result.stderr


def _kill_demo(up: subprocess.Popen[str], home: Path) -> None:
    """``murmur up`` and the nodes it started (each in a session of its own)."""
    up.kill()
    up.communicate()  # and its pipes closed
    for pid, line in _processes().items():
        if str(home) in line:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_murmur_up_starts_a_cluster_that_status_reaches_with_no_flags(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MURMUR_")}
    env["MURMUR_HOME"] = str(home)
    port = free_port("127.0.0.1")
    up = subprocess.Popen(
        [sys.executable, "-m", "murmur", "up", "--nodes", "3", "--port", str(port),
         "--router-port", str(free_port("127.0.0.1"))],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=interruptible,  # stopped with SIGINT, as Ctrl-C would
    )  # fmt: skip
    seen: list[str] = []
    try:
        assert up.stderr is not None
        while not any("cluster is up" in line for line in seen):
            line = up.stderr.readline()  # murmur up bounds its own start-up wait (30 s)
            assert line, f"murmur up ended early: {seen}"
            seen.append(line)
        status = subprocess.run(
            [sys.executable, "-m", "murmur", "status"],
            env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert status is not None
        assert status.returncode == 0, (status.stderr, up.poll())
        # Every node, from the one node the client knows: gossip put them together.
        for index in (1, 2, 3):
            assert f"node-{index}" in status.stdout
            assert f"127.0.0.{index}:{port}" in status.stdout
        assert "(simulated)" in status.stdout
        assert "24" in status.stdout, "3 nodes x 8 simulated GPUs"
        second = subprocess.run(
            [sys.executable, "-m", "murmur", "whoami", "--node", f"127.0.0.2:{port}"],
            env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert "answered by node node-2" in second.stdout, second.stderr
        # The join token went to nodes 2 and 3 in their environment: `ps` shows
        # every account the command lines, and none holds it.
        node_lines = [line for line in _command_lines() if str(home) in line]
        assert len(node_lines) == 3, node_lines
        assert not any("--token" in line for line in node_lines), node_lines
        # The admin is named after the account that ran `murmur up`, whose jobs run as it.
        job_id = subprocess.run(
            [sys.executable, "-m", "murmur", "job", "submit", "--runtime", "process",
             "--", "id", "-un"],
            env=env, capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
        logs = subprocess.run(
            [sys.executable, "-m", "murmur", "job", "logs", job_id, "--follow"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert own_account_name() in logs.stdout.splitlines(), (logs.stdout, logs.stderr)
    finally:
        up.send_signal(signal.SIGINT)
        try:
            _, stderr = up.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            _kill_demo(up, home)  # a failure here must not leave a cluster running
            raise
    assert up.returncode == 0, stderr
    assert any("murmur: a 3-node cluster is up" in line for line in seen)
    assert not any("does not see all" in line for line in seen), seen
    for index in (1, 2, 3):
        log = (home / "cluster" / f"node-{index}" / "node.log").read_text()
        assert '"event": "node.stopped"' in log, f"node-{index} did not stop cleanly"


def test_murmur_up_with_its_router_port_taken_says_so_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MURMUR_")}
    env["MURMUR_HOME"] = str(home)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        router_port = taken.getsockname()[1]
        up = subprocess.run(
            [sys.executable, "-m", "murmur", "up", "--nodes", "1",
             "--port", str(free_port("127.0.0.1")), "--router-port", str(router_port)],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert up.returncode == 1
    assert up.stderr.strip().splitlines()[-1] == (
        f"murmur: error: node-1 exited at start: the router cannot listen on "
        f"127.0.0.1:{router_port}: Address already in use"
    )
    # The node closed what it had opened before it stopped: nothing left to complain
    # at exit (grpc's servers, when left open, did), and no process left behind.
    log = (home / "cluster" / "node-1" / "node.log").read_text()
    assert "Traceback" not in log, log
    assert [line for line in _command_lines() if str(home) in line] == []
