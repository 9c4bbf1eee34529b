"""The daemon's helpers from the frozen build (murmur/_frozen.py): with no ``python``
to run, the one executable runs itself as ``murmur __run-helper MODULE ARGS``.

Simulated here without PyInstaller: ``sys.frozen`` set and ``sys.executable`` a
launcher that runs this checkout's ``python -m murmur``, so every spawn site takes
the frozen path and the hidden argument goes through the real CLI entry.
scripts/dist-smoke.sh (``make dist-check``) runs a job on the real frozen build.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from murmur._frozen import RUN_HELPER, helper_command, murmur_command, run_helper
from murmur.node.agent.runtimes.base import LaunchSpec, RunFiles
from murmur.node.agent.runtimes.detached import spawn_module
from murmur.node.agent.runtimes.process import ProcessRuntime
from tests.support.run_processes import kill_everything_under

REPO_ROOT = Path(__file__).resolve().parents[4]
FORKSERVER = "murmur.node.agent.runtimes.forkserver"


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """This process as the frozen build; returns its stand-in executable."""
    launcher = tmp_path / "murmur-frozen"
    launcher.write_text(
        f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO_ROOT))} "
        f'exec {shlex.quote(sys.executable)} -m murmur "$@"\n'
    )
    launcher.chmod(0o755)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(launcher))
    return launcher


@pytest.fixture
def runs_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "runs"
    yield directory
    kill_everything_under(directory)


def test_command_lines_with_and_without_python(
    frozen: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert helper_command(FORKSERVER, ["a"], python="/py", flags=["-S"]) == [
        str(frozen), RUN_HELPER, FORKSERVER, "a",
    ]  # fmt: skip
    assert murmur_command() == [str(frozen)]
    monkeypatch.setattr(sys, "frozen", False)
    assert helper_command(FORKSERVER, ["a"], python="/py", flags=["-S"]) == [
        "/py", "-S", "-m", FORKSERVER, "a",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="not a helper"):
        helper_command("os", [], python="/py")


def test_only_helpers_run_through_the_hidden_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_helper(["os"]) == 2
    assert run_helper([]) == 2
    assert "needs one of" in capsys.readouterr().err


async def test_a_process_run_starts_through_the_frozen_fork_server(
    frozen: Path, runs_dir: Path
) -> None:
    runtime = ProcessRuntime(runs_dir=runs_dir, node_name="node-1")
    try:
        assert await runtime.available() == (True, "")
        server = runtime.fork_server_pid
        assert server is not None
        # Read until the launcher has exec'd the helper: while the shell or the
        # execve itself runs, the command line is the shell's, or empty (seen under
        # load).
        helper = [RUN_HELPER.encode(), FORKSERVER.encode()]
        command: list[bytes] = []
        for _ in range(100):
            with open(f"/proc/{server}/cmdline", "rb") as cmdline:  # noqa: ASYNC230 - procfs
                command = cmdline.read().split(b"\0")
            if command[-3:-1] == helper:
                break
            await asyncio.sleep(0.05)
        assert command[-3:-1] == helper
        spec = LaunchSpec(
            run_id="frozen-1", job_id="job-1", node_name="node-1",
            argv=("sh", "-c", "echo from-frozen"), shell=False, env={}, workdir=None,
            gpu_indices=(), cpus=None, memory_bytes=None, datasets=(),
            files=RunFiles(runs_dir / "frozen-1"),
        )  # fmt: skip
        handle = await runtime.start(spec)
        ended = await runtime.wait(handle)
        assert ended.exit_code == 0, ended
    finally:
        runtime.close()


def test_a_lease_guard_starts_as_the_frozen_build(frozen: Path, tmp_path: Path) -> None:
    """The detached path (lease guards, and supervisors without the fork server):
    wrong arguments on purpose, so that the guard prints its usage and exits."""
    log = tmp_path / "guard.log"
    pid = spawn_module(
        "/no/python/here", ["-P"], "murmur.node.agent.runtimes.lease_guard", ["x"], log_path=log
    )
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2
    assert "usage: python -m murmur.node.agent.runtimes.lease_guard" in log.read_text()
