"""`murmur top` in a real terminal (tmux) against a real 3-node local cluster.

The screen is read back with `tmux capture-pane`, as a person would read it: every
node and its GPUs, then a running job and its log lines arriving live.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.nodes import Lab, NodeProcess, lab_fixture

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
TICKER = "import time\nfor i in range(3000):\n    print(f'tick {i}', flush=True); time.sleep(0.1)"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.serial,
    pytest.mark.skipif(not os.path.exists(TMUX), reason="tmux is not installed"),
]


@dataclass
class ThreeNodes:
    lab: Lab
    nodes: list[NodeProcess]
    job_id: str


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreeNodes]:
    """node-1 holds the CA; node-2 and node-3 join it with tokens; a job ticks on node-1."""
    for lab in lab_fixture(tmp_path_factory.mktemp("lab")):
        gpus = ["--simulate-gpus", "8xA100-80GB"]
        first = lab.start_node("node-1", data_dir=lab.first_data_dir, extra_args=gpus)
        nodes = [first]
        for name in ("node-2", "node-3"):
            token = lab.murmur("token", "create", "--node", first.address)
            assert token.returncode == 0, token.stderr
            join = ["--join", first.address, "--token", token.stdout.strip()]
            nodes.append(lab.start_node(name, extra_args=[*join, *gpus]))
        submitted = lab.murmur(
            "job", "submit", "--runtime", "process", "--gpus", "1", "--name", "ticker",
            "--node", first.address, "--", sys.executable, "-c", TICKER,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        yield ThreeNodes(lab=lab, nodes=nodes, job_id=submitted.stdout.strip())


class Terminal:
    """One tmux server of our own (its own socket), one window running a command."""

    def __init__(self, socket: str, command: str, *, width: int = 160, height: int = 45) -> None:
        self.socket = socket
        self._tmux("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height), command)
        # Keep the pane when the program exits: a crash's traceback stays readable.
        self._tmux("set-option", "-t", "top", "remain-on-exit", "on")

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(
            [TMUX, "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "top")

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "top", "-l", text)

    def command(self, line: str) -> None:
        """`:` then a command line, as typed: the prompt opens before the line is typed."""
        self.type(":")
        self.wait_for("view: cluster | node NAME")
        self.type(line)
        self.press("Enter")

    def press(self, key: str) -> None:
        self._tmux("send-keys", "-t", "top", key)

    def wait_for(self, *needles: str, seconds: float = 30.0) -> str:
        deadline = time.monotonic() + seconds
        while True:
            screen = self.screen()
            if all(needle in screen for needle in needles):
                return screen
            if time.monotonic() > deadline:
                missing = [needle for needle in needles if needle not in screen]
                raise AssertionError(f"not on screen: {missing}\n{screen}")
            time.sleep(0.2)

    def wait_for_match(self, pattern: str, seconds: float = 30.0, count: int = 1) -> list[str]:
        """Every match of `pattern` on the screen, once there are at least `count`."""
        deadline = time.monotonic() + seconds
        while len(matches := re.findall(pattern, self.screen())) < count:
            assert time.monotonic() < deadline, (
                f"{len(matches)} of {count} {pattern!r} on screen:\n{self.screen()}"
            )
            time.sleep(0.2)
        return matches

    def close(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def terminal(three_nodes: ThreeNodes, tmp_path: Path) -> Iterator[Terminal]:
    lab, first = three_nodes.lab, three_nodes.nodes[0]
    env = {**lab.env, "MURMUR_IDENTITY": str(lab.admin_identity), "TERM": "xterm-256color"}
    exports = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
    command = f"env -i {exports} {shlex.quote(sys.executable)} -m murmur top --node {first.address}"
    session = Terminal(f"murmur-top-{os.getpid()}-{tmp_path.name}", command)
    try:
        yield session
    finally:
        session.close()


def test_top_in_tmux_shows_the_gpus_a_running_job_and_its_live_log(
    three_nodes: ThreeNodes, terminal: Terminal
) -> None:
    first, job_id = three_nodes.nodes[0], three_nodes.job_id
    terminal.wait_for("murmur top", f"attached to node-1 at {first.address}")
    terminal.wait_for("node-1", "8xA100 (simulated)", "1/8")
    terminal.command("jobs")
    # The job's own row says running (the header's "N running" is there regardless).
    terminal.wait_for_match(rf"{job_id} +ticker +admin +default +running")
    terminal.command(f"job {job_id}")
    terminal.wait_for(f"job {job_id}", "job.state")
    terminal.type("l")
    terminal.wait_for("log: live")
    # A log line, not the job's command: the command itself shows "tick {i}".
    first_tick = max(int(n) for n in terminal.wait_for_match(r"tick (\d+)"))
    deadline = time.monotonic() + 20
    while True:  # new lines keep arriving: the log is live, not a snapshot
        later = max(int(n) for n in re.findall(r"tick (\d+)", terminal.screen()) or ["0"])
        if later > first_tick + 5:
            break
        assert time.monotonic() < deadline, terminal.screen()
        time.sleep(0.2)
    terminal.press("q")


def test_top_in_tmux_shows_every_node_of_a_three_node_cluster(
    three_nodes: ThreeNodes, terminal: Terminal
) -> None:
    terminal.wait_for("murmur top", seconds=45)
    # One row per node (the header names node-1 too, but never a model).
    rows = terminal.wait_for_match(r"(node-\d) [^\n]*8xA100 \(simulated\)", count=3, seconds=45)
    assert sorted(rows) == ["node-1", "node-2", "node-3"]
    terminal.wait_for("nodes 3 (3 alive)")
