"""The per-run supervisor, run as the real process the runtime starts: it captures
output, records how the job ended, forwards SIGTERM, and leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from murmur.node.agent.runtimes.procfs import is_running, read_stat
from murmur.node.agent.runtimes.run_files import (
    CHILD_FILE,
    EXIT_FILE,
    LAUNCH_FILE,
    LOG_DIR,
    SUPERVISOR_FILE,
    Launch,
    read_json,
    write_json_atomic,
)
from murmur.node.agent.runtimes.run_log import LogEntry, read_entries
from murmur.node.agent.runtimes.supervisor import LineSplitter, describe_exit

REPO_ROOT = Path(__file__).resolve().parents[4]
SETTLE_SECONDS = 10.0


class Supervised:
    """One supervisor started by a test, and its run directory."""

    def __init__(self, run_dir: Path, process: subprocess.Popen[bytes]) -> None:
        self.run_dir = run_dir
        self.process = process

    def finish(self) -> dict[str, Any]:
        self.process.wait(timeout=SETTLE_SECONDS)
        assert self.process.returncode == 0, (self.run_dir / "supervisor.log").read_text()
        data = read_json(self.run_dir / EXIT_FILE)
        assert data is not None
        return data

    def entries(self) -> list[LogEntry]:
        return list(read_entries(self.run_dir / LOG_DIR))

    def texts(self, stream: str) -> list[str]:
        return [e.text for e in self.entries() if e.stream == stream]

    def wait_for_output(self, text: str) -> None:
        deadline = time.monotonic() + SETTLE_SECONDS
        while text not in self.texts("stdout"):
            assert time.monotonic() < deadline, f"no {text!r} in {self.entries()}"
            time.sleep(0.01)


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Any]:
    started: list[Supervised] = []

    def start(argv: list[str], *, shell: bool = False, **overrides: Any) -> Supervised:
        run_id = f"run-{len(started)}"
        run_dir = tmp_path / run_id
        run_dir.mkdir()
        fields: dict[str, Any] = {
            "run_id": run_id,
            "argv": tuple(argv),
            "shell": shell,
            "env": {"PATH": os.environ["PATH"]},
            "workdir": str(tmp_path),
            "memory_bytes": None,
            "cpus": None,
        } | overrides
        write_json_atomic(run_dir / LAUNCH_FILE, Launch(**fields).to_json())
        log = (run_dir / "supervisor.log").open("wb")
        with log:
            process = subprocess.Popen(
                [sys.executable, "-P", "-m", "murmur.node.agent.runtimes.supervisor", str(run_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT)},
                start_new_session=True,
            )
        supervised = Supervised(run_dir, process)
        started.append(supervised)
        return supervised

    yield start
    for supervised in started:
        child = read_json(supervised.run_dir / CHILD_FILE)
        if child is not None and is_running(child["pid"], child["start_time"]):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child["pgid"], signal.SIGKILL)
        if supervised.process.poll() is None:
            supervised.process.kill()
        supervised.process.wait(timeout=SETTLE_SECONDS)


def test_output_of_both_streams_is_captured_in_order_and_the_exit_recorded(
    supervise: Any,
) -> None:
    run = supervise(
        ["sh", "-c", "echo one; echo oops >&2; echo two; echo again >&2; exit 3"],
    )
    before = time.time()

    ended = run.finish()

    assert ended["exit_code"] == 3
    assert ended["reason"] == "exited with code 3"
    assert run.texts("stdout") == ["one", "two"]
    assert run.texts("stderr") == ["oops", "again"]
    system = run.texts("system")
    child = read_json(run.run_dir / CHILD_FILE)
    assert child is not None
    assert system == [f"started pid {child['pid']}", "exited with code 3"]
    assert child["pgid"] == child["pid"]
    assert all(before - 5 < e.time <= ended["finished_at"] for e in run.entries())
    supervisor = read_json(run.run_dir / SUPERVISOR_FILE)
    assert supervisor is not None
    assert supervisor["pid"] == run.process.pid


def test_the_job_gets_the_launch_env_and_workdir_only(supervise: Any, tmp_path: Path) -> None:
    workdir = tmp_path / "work here"
    workdir.mkdir()
    run = supervise(
        ["sh", "-c", 'pwd; echo "$GREETING"; env | grep -c PYTHONPATH || true'],
        env={"PATH": os.environ["PATH"], "GREETING": "hello there"},
        workdir=str(workdir),
    )

    assert run.finish()["exit_code"] == 0
    assert run.texts("stdout") == [str(workdir), "hello there", "0"]


def test_a_shell_command_runs_through_sh(supervise: Any) -> None:
    run = supervise(["echo $((40 + 2))", "| tr 4 X"], shell=True)

    assert run.finish()["exit_code"] == 0
    assert run.texts("stdout") == ["X2"]


def test_a_missing_command_is_an_exit_without_code(supervise: Any) -> None:
    run = supervise(["trainx", "--epochs", "3"])

    ended = run.finish()

    assert ended["exit_code"] is None
    assert ended["reason"] == "command not found: trainx"
    assert run.texts("system") == ["command not found: trainx"]
    assert not (run.run_dir / CHILD_FILE).exists()


def test_a_missing_workdir_is_an_exit_without_code(supervise: Any, tmp_path: Path) -> None:
    run = supervise(["true"], workdir=str(tmp_path / "gone"))

    ended = run.finish()

    assert ended["exit_code"] is None
    assert ended["reason"] == f"working directory not found: {tmp_path / 'gone'}"


def test_sigterm_is_forwarded_to_the_job(supervise: Any) -> None:
    run = supervise(["sh", "-c", 'trap "exit 7" TERM; echo ready; sleep 30 & wait'])
    run.wait_for_output("ready")

    run.process.send_signal(signal.SIGTERM)
    ended = run.finish()

    assert ended["exit_code"] == 7
    assert ended["reason"] == "exited with code 7"


def test_a_job_killed_by_a_signal_is_recorded_as_such(supervise: Any) -> None:
    run = supervise(["sh", "-c", "kill -9 $$"])

    ended = run.finish()

    assert ended["exit_code"] == 128 + 9
    assert ended["reason"] == "killed by signal SIGKILL"


def test_what_the_job_left_in_its_group_is_killed_when_it_ends(supervise: Any) -> None:
    run = supervise(["sh", "-c", "sleep 30 & echo $!; echo spawned"])
    run.wait_for_output("spawned")
    leftover = int(run.texts("stdout")[0])

    ended = run.finish()  # does not wait for the sleep: it is killed

    assert ended["exit_code"] == 0
    stat = read_stat(leftover)
    assert stat is None or stat.state == "Z"


def test_undecodable_output_and_progress_bars_become_readable_lines(supervise: Any) -> None:
    run = supervise(["sh", "-c", r"printf 'caf\351\n'; printf '10%%\r50%%\r100%%\r\n'"])

    run.finish()

    assert run.texts("stdout") == ["caf\ufffd", "10%", "50%", "100%"]


def test_a_memory_limit_is_enforced_or_the_log_says_why_not(supervise: Any) -> None:
    run = supervise(["cat", "/proc/self/cgroup"], memory_bytes=512 * 1024 * 1024)

    assert run.finish()["exit_code"] == 0

    system = run.texts("system")
    if any("limit not enforced" in line for line in system):
        assert system[0].startswith("memory limit not enforced: ")
    else:
        assert any(line.endswith(f"/murmur/{run.run_dir.name}") for line in run.texts("stdout"))


def _limits_unavailable() -> str | None:
    """Why this machine cannot enforce a job's limits (neither cgroup v2 nor a
    writable cgroup v1 memory and cpu hierarchy), or None."""
    if os.geteuid() != 0:
        return "setting up cgroups needs root"
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    if any(" /sys/fs/cgroup cgroup2 " in line for line in mounts):
        return None
    v1 = {
        option
        for line in mounts
        if len(fields := line.split()) >= 4 and fields[2] == "cgroup"
        for option in fields[3].split(",")
    }
    missing = {"memory", "cpu"} - v1
    return f"no cgroup {' or '.join(sorted(missing))} controller" if missing else None


_WHY_NO_LIMITS = _limits_unavailable()
needs_cgroups = pytest.mark.skipif(
    _WHY_NO_LIMITS is not None and os.environ.get("CI") != "true",
    reason=f"limits cannot be enforced here: {_WHY_NO_LIMITS}",
)

_ALLOCATE = "import sys; chunks = [bytearray(16 * 2**20) for _ in range(40)]; print(len(chunks))"
_SPIN = (
    "import time\n"
    "end = time.monotonic() + 1.5\n"
    "while time.monotonic() < end: pass\n"
    "print(time.process_time())\n"
)


@needs_cgroups
def test_a_job_over_its_memory_limit_is_killed_and_says_out_of_memory(supervise: Any) -> None:
    run = supervise([sys.executable, "-c", _ALLOCATE], memory_bytes=96 * 2**20)

    ended = run.finish()

    assert ended["exit_code"] == 137, (ended, run.texts("system"))
    assert "out of memory" in ended["reason"]
    assert not any("not enforced" in line for line in run.texts("system"))
    # The same job without a limit allocates its 640 MiB and succeeds.
    free = supervise([sys.executable, "-c", _ALLOCATE])
    assert free.finish()["exit_code"] == 0
    assert free.texts("stdout") == ["40"]


@needs_cgroups
def test_a_cpu_limit_holds_a_busy_job_to_its_share(supervise: Any) -> None:
    run = supervise([sys.executable, "-c", _SPIN], cpus=0.2)

    assert run.finish()["exit_code"] == 0
    cpu_seconds = float(run.texts("stdout")[0])
    # 1.5 s of wall time at 0.2 of a CPU is about 0.3 s of CPU; unlimited, about 1.5 s.
    assert cpu_seconds < 0.8, cpu_seconds
    assert not any("not enforced" in line for line in run.texts("system"))


def test_describe_exit_uses_the_shell_convention_for_signals() -> None:
    assert describe_exit(0) == (0, "exited with code 0")
    assert describe_exit(-15) == (143, "killed by signal SIGTERM")
    assert describe_exit(-200) == (328, "killed by signal signal 200")


class TestLineSplitter:
    def test_newlines_carriage_returns_and_crlf_end_lines(self) -> None:
        splitter = LineSplitter()
        lines = splitter.feed(b"a\nb\r\nc\rd\n\n") + splitter.finish()

        assert lines == [b"a", b"b", b"c", b"d", b""]

    def test_a_crlf_split_across_reads_is_one_line_end(self) -> None:
        splitter = LineSplitter()

        assert splitter.feed(b"x\r") == []
        assert splitter.feed(b"\ny") == [b"x"]
        assert splitter.finish() == [b"y"]

    def test_progress_redraws_yield_no_empty_lines(self) -> None:
        splitter = LineSplitter()

        assert splitter.feed(b"\r 1/3\r 2/3\r 3/3\n") == [b" 1/3", b" 2/3", b" 3/3"]

    def test_a_line_without_end_is_cut_at_the_cap(self) -> None:
        splitter = LineSplitter(max_bytes=4)

        assert splitter.feed(b"abcdefghij") == [b"abcd", b"efgh"]
        assert splitter.finish() == [b"ij"]


def test_the_supervisor_imports_nothing_heavy() -> None:
    """It starts once per run: grpc, aiosqlite or asyncio would delay every job."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-P",
            "-c",
            "import sys, murmur.node.agent.runtimes.supervisor;"
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
