"""The supervisor fork server: what it forks is a supervisor like any other, it
never lets a supervisor run that its owner was not told of, and when it fails or
hangs, runs still start, once each."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from murmur.node.agent.runtimes.base import LaunchSpec, RunExit, RunFiles
from murmur.node.agent.runtimes.forkserver import (
    FORKSERVER_LOG,
    ForkServer,
    ForkServerError,
    _become_supervisor,
)
from murmur.node.agent.runtimes.process import ProcessRuntime
from murmur.node.agent.runtimes.procfs import is_running, read_stat
from murmur.node.agent.runtimes.run_files import (
    CHILD_FILE,
    LAUNCH_FILE,
    SUPERVISOR_FILE,
    SUPERVISOR_LOG,
    Launch,
    read_json,
    write_json_atomic,
)
from murmur.node.agent.runtimes.run_log import read_entries
from tests.support.run_processes import kill_everything_under

REPO_ROOT = Path(__file__).resolve().parents[4]
SETTLE_SECONDS = 10.0


@pytest.fixture
def runs_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "runs"
    yield directory
    kill_everything_under(directory)


@pytest.fixture
def runtime(runs_dir: Path) -> Iterator[ProcessRuntime]:
    runtime = ProcessRuntime(runs_dir=runs_dir, node_name="node-1")
    yield runtime
    runtime.close()


def spec_of(runs_dir: Path, run_id: str, *argv: str) -> LaunchSpec:
    return LaunchSpec(
        run_id=run_id,
        job_id=f"job-{run_id}",
        node_name="node-1",
        argv=argv,
        shell=False,
        env={},
        workdir=None,
        gpu_indices=(),
        cpus=None,
        memory_bytes=None,
        datasets=(),
        files=RunFiles(runs_dir / run_id),
    )


def parent_and_session(pid: int) -> tuple[int, int]:
    """Fields 4 (ppid) and 6 (session) of ``/proc/PID/stat``."""
    data = Path(f"/proc/{pid}/stat").read_bytes()
    fields = data[data.rfind(b")") + 2 :].split()
    return int(fields[4 - 3]), int(fields[6 - 3])


@contextlib.contextmanager
def started_pipe() -> Iterator[int]:
    """The write end of a started pipe, as the runtime passes it to ``spawn``."""
    read, write = os.pipe()
    try:
        yield write
    finally:
        os.close(read)
        os.close(write)


def open_fds(pid: int) -> list[str]:
    return sorted(os.listdir(f"/proc/{pid}/fd"), key=int)


def fd_targets(pid: int) -> dict[str, str]:
    """What each open descriptor of ``pid`` points to, for a failure message."""
    targets = {}
    for fd in open_fds(pid):
        with contextlib.suppress(OSError):
            targets[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
    return targets


def process_name(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def gone(pid: int) -> bool:
    """No such process any more, not even a zombie: someone reaped it."""
    return read_stat(pid) is None


def exited(pid: int) -> bool:
    """Gone, or a zombie."""
    stat = read_stat(pid)
    return stat is None or stat.state == "Z"


async def settle(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_a_supervisor_is_forked_into_a_session_of_its_own_and_reaped_when_done(
    runtime: ProcessRuntime, runs_dir: Path
) -> None:
    assert await runtime.available() == (True, "")  # warms the fork server
    server = runtime.fork_server_pid
    assert server is not None

    # A job that outlives the checks below: its supervisor is still there to look at.
    handle = await runtime.start(spec_of(runs_dir, "one", "sleep", "30"))

    assert handle.pid is not None
    assert parent_and_session(handle.pid) == (server, handle.pid)
    # They share the server's command line; top and ps -o comm tell them apart.
    assert process_name(handle.pid) == "murmur-run"
    assert process_name(server) == "murmur-forksrv"
    with pytest.raises(ChildProcessError):  # not the daemon's to reap
        os.waitpid(handle.pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG: does not block
    await runtime.stop(handle, grace_seconds=SETTLE_SECONDS)  # returns once it has exited
    assert await runtime.wait(handle) == RunExit(143, "killed by signal SIGTERM")
    pid = handle.pid
    await settle(lambda: gone(pid), "the exited supervisor was not reaped by the fork server")
    assert runtime.fork_server_pid == server  # one server for every run


async def test_the_job_holds_no_descriptor_of_its_supervisor_or_the_server(
    runtime: ProcessRuntime, runs_dir: Path
) -> None:
    """Not the started pipe (the runtime would wait for the job's end to hear of a
    supervisor that died), nor the server's channel (its EOF is how it learns the
    daemon is gone)."""
    spec = spec_of(runs_dir, "fds", "sleep", "30")
    handle = await runtime.start(spec)

    child = read_json(spec.files.directory / CHILD_FILE)
    assert child is not None
    pid = child["pid"]
    # Just after its exec the job may still be in the dynamic loader, which holds
    # ld.so.cache or a library open as fd 3 for a moment (CI caught it there once):
    # a leaked descriptor stays, that one goes.
    deadline = time.monotonic() + SETTLE_SECONDS
    while open_fds(pid) != ["0", "1", "2"]:
        assert time.monotonic() < deadline, f"the job holds {fd_targets(pid)}"
        await asyncio.sleep(0.02)
    await runtime.stop(handle, grace_seconds=1)


async def test_many_runs_at_once_each_get_their_own_supervisor(
    runtime: ProcessRuntime, runs_dir: Path
) -> None:
    specs = [spec_of(runs_dir, f"run-{n}", "sh", "-c", f"echo {n}") for n in range(8)]

    handles = await asyncio.gather(*(runtime.start(spec) for spec in specs))
    exits = await asyncio.gather(*(runtime.wait(handle) for handle in handles))

    assert exits == [RunExit(0, "exited with code 0")] * 8
    assert len({handle.pid for handle in handles}) == 8
    for n, spec in enumerate(specs):
        lines = [e.text for e in read_entries(spec.files.log_dir) if e.stream == "stdout"]
        assert lines == [str(n)]


async def test_the_fork_server_stops_when_its_owner_closes_it_and_runs_go_on(
    runtime: ProcessRuntime, runs_dir: Path
) -> None:
    handle = await runtime.start(spec_of(runs_dir, "long", "sleep", "30"))
    server = runtime.fork_server_pid
    assert server is not None
    assert handle.pid is not None

    runtime.close()

    assert gone(server)
    assert runtime.fork_server_pid is None
    assert is_running(handle.pid, handle.pid_start_time)
    await runtime.stop(handle, grace_seconds=1)


async def test_a_killed_fork_server_costs_no_run_and_is_not_restarted_at_once(
    runtime: ProcessRuntime, runs_dir: Path
) -> None:
    assert await runtime.available() == (True, "")
    server = runtime.fork_server_pid
    assert server is not None
    os.kill(server, signal.SIGKILL)
    await settle(lambda: exited(server), "the fork server survived SIGKILL")

    first = spec_of(runs_dir, "after-kill", "sh", "-c", "echo once; sleep 0.2")
    handle = await runtime.start(first)
    later = await runtime.start(spec_of(runs_dir, "later", "sleep", "0.2"))

    # Started by the runtime itself (the failed server is left alone for a while).
    assert handle.pid is not None
    assert later.pid is not None
    assert parent_and_session(handle.pid) == (os.getpid(), handle.pid)
    assert parent_and_session(later.pid) == (os.getpid(), later.pid)
    assert runtime.fork_server_pid is None
    assert await runtime.wait(handle) == RunExit(0, "exited with code 0")
    assert await runtime.wait(later) == RunExit(0, "exited with code 0")
    # Exactly once.
    started = [e.text for e in read_entries(first.files.log_dir) if e.stream == "system"]
    assert sum(text.startswith("started pid") for text in started) == 1
    assert [e.text for e in read_entries(first.files.log_dir) if e.stream == "stdout"] == ["once"]


def test_a_child_its_server_never_told_to_go_leaves_the_run_alone(tmp_path: Path) -> None:
    """The server died between the fork and its reply: the runtime cannot know the
    child, so the child must not run the job (the runtime starts it another way)."""
    run_dir = tmp_path / "run"
    (run_dir / "work").mkdir(parents=True)
    launch = Launch(
        run_id="run",
        argv=("sleep", "30"),
        shell=False,
        env={"PATH": os.environ["PATH"]},
        workdir=str(run_dir / "work"),
        memory_bytes=None,
        cpus=None,
    )
    write_json_atomic(run_dir / LAUNCH_FILE, launch.to_json())
    go_read, go_write = os.pipe()

    started_read, started_write = os.pipe()

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child always leaves through os._exit
        _become_supervisor(str(run_dir), go_read, started_write, (go_write, started_read))
    os.close(go_read)
    os.close(started_write)
    os.close(go_write)  # the server "dies" without the go byte
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert not (run_dir / SUPERVISOR_FILE).exists()
    assert not (run_dir / SUPERVISOR_LOG).exists()
    assert os.read(started_read, 1) == b""  # the runtime hears of it: end-of-file
    os.close(started_read)


def test_a_server_that_does_not_answer_is_killed_and_the_request_refused(
    tmp_path: Path,
) -> None:
    hung = tmp_path / "hung-python"
    hung.write_text("#!/bin/sh\nexec sleep 30\n")
    hung.chmod(0o755)
    server = ForkServer(
        python=str(hung),
        package_root=REPO_ROOT,
        log_path=tmp_path / FORKSERVER_LOG,
        reply_timeout_seconds=0.3,
    )

    with started_pipe() as started, pytest.raises(ForkServerError, match=r"within 0\.3 s"):
        server.spawn(tmp_path / "run", started)

    assert server.pid is None  # killed and reaped, not left hanging
    with started_pipe() as started, pytest.raises(ForkServerError, match="failed recently"):
        server.spawn(tmp_path / "run", started)


def test_a_server_that_cannot_start_says_why(tmp_path: Path) -> None:
    broken = tmp_path / "broken-python"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named node' >&2\nexit 1\n")
    broken.chmod(0o755)
    server = ForkServer(python=str(broken), package_root=REPO_ROOT, log_path=tmp_path / "fs.log")

    with (
        started_pipe() as started,
        pytest.raises(ForkServerError, match="exited: ModuleNotFoundError: No module named node"),
    ):
        server.spawn(tmp_path / "run", started)
    assert server.pid is None


def test_the_fork_server_imports_nothing_heavy() -> None:
    """Every supervisor is a copy of it: grpc, aiosqlite or asyncio would be in each."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-S",
            "-P",
            "-c",
            "import sys, murmur.node.agent.runtimes.forkserver;"
            " print(' '.join(sorted(sys.modules)))",
        ],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()

    heavy = [m for m in loaded if m.split(".")[0] in {"grpc", "aiosqlite", "asyncio", "google"}]
    assert heavy == []
    assert "murmur.node.agent.runtimes.supervisor" in loaded
