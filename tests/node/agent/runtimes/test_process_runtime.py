"""The process runtime with real processes and files: starting, waiting, stopping,
the environment a job sees, and finding runs again after the daemon was killed."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from murmur.node.agent.runtimes.base import (
    DatasetMount,
    LaunchSpec,
    RunExit,
    RunFiles,
    RunHandle,
    RuntimeStartError,
)
from murmur.node.agent.runtimes.process import LOST_REASON, REAPED_REASON, ProcessRuntime
from murmur.node.agent.runtimes.procfs import (
    is_running,
    is_same_process,
    process_start_time,
    read_stat,
)
from murmur.node.agent.runtimes.run_files import CHILD_FILE, SUPERVISOR_FILE, read_json
from murmur.node.agent.runtimes.run_log import read_entries
from tests.support.run_processes import kill_everything_under

REPO_ROOT = Path(__file__).resolve().parents[4]
HELPER = Path(__file__).with_name("start_runs_then_hang.py")
SETTLE_SECONDS = 10.0

_run_numbers = itertools.count(1)


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


def launch_spec(runs_dir: Path, argv: tuple[str, ...], **overrides: Any) -> LaunchSpec:
    run_id = f"run-{next(_run_numbers)}"
    fields: dict[str, Any] = {
        "run_id": run_id,
        "job_id": f"job-{run_id}",
        "node_name": "node-1",
        "argv": argv,
        "shell": False,
        "env": {},
        "workdir": None,
        "gpu_indices": (),
        "cpus": None,
        "memory_bytes": None,
        "datasets": (),
        "files": RunFiles(runs_dir / run_id),
    } | overrides
    return LaunchSpec(**fields)


def output(spec: LaunchSpec, stream: str = "stdout") -> list[str]:
    return [e.text for e in read_entries(spec.files.log_dir) if e.stream == stream]


async def wait_for_output(spec: LaunchSpec, text: str) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while text not in output(spec):
        assert time.monotonic() < deadline, f"no {text!r} from the run"
        await asyncio.sleep(0.02)


async def until_gone(pid: int, start_time: int | None) -> None:
    deadline = time.monotonic() + SETTLE_SECONDS
    while is_running(pid, start_time):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        await asyncio.sleep(0.01)


def job_pid(spec: LaunchSpec) -> tuple[int, int]:
    child = read_json(spec.files.directory / CHILD_FILE)
    assert child is not None
    return child["pid"], child["start_time"]


async def run_to_end(runtime: ProcessRuntime, spec: LaunchSpec) -> RunExit:
    handle = await runtime.start(spec)
    return await asyncio.wait_for(runtime.wait(handle), SETTLE_SECONDS)


async def job_env(runtime: ProcessRuntime, spec_of: Any) -> dict[str, str]:
    """The environment a run sees, printed by the run itself."""
    spec = spec_of((sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"))
    assert await run_to_end(runtime, spec) == RunExit(0, "exited with code 0")
    return dict(json.loads(output(spec)[0]))


async def test_a_run_that_prints_and_exits_0(runtime: ProcessRuntime, runs_dir: Path) -> None:
    spec = launch_spec(runs_dir, ("sh", "-c", "echo hello; echo world >&2"))

    handle = await runtime.start(spec)
    ended = await runtime.wait(handle)

    assert ended == RunExit(0, "exited with code 0")
    assert handle.run_id == spec.run_id
    assert handle.runtime == "process"
    supervisor = read_json(spec.files.directory / SUPERVISOR_FILE)
    assert supervisor == {"pid": handle.pid, "start_time": handle.pid_start_time}
    assert output(spec) == ["hello"]
    assert output(spec, "stderr") == ["world"]
    assert json.loads(spec.files.exit.read_text())["exit_code"] == 0
    assert await runtime.available() == (True, "")
    await runtime.cleanup(handle)


async def test_a_failing_run_reports_its_exit_code(runtime: ProcessRuntime, runs_dir: Path) -> None:
    spec = launch_spec(runs_dir, ("sh", "-c", "exit 3"))

    assert await run_to_end(runtime, spec) == RunExit(3, "exited with code 3")


async def test_the_environment_pins_gpus_and_names_the_run_and_datasets(
    runtime: ProcessRuntime, runs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MURMUR_DAEMON_SECRET", "never in a job")
    dataset = tmp_path / "imagenet"
    dataset.mkdir()

    env = await job_env(
        runtime,
        lambda argv: launch_spec(
            runs_dir,
            argv,
            job_id="job-42",
            gpu_indices=(1, 3),
            env={"LEARNING_RATE": "0.1", "CUDA_VISIBLE_DEVICES": "0,1,2,3"},
            datasets=(DatasetMount("imagenet-1k.v2", dataset),),
        ),
    )

    assert env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["MURMUR_JOB_ID"] == "job-42"
    assert env["MURMUR_RUN_ID"].startswith("run-")
    assert env["MURMUR_DATASET_IMAGENET_1K_V2"] == str(dataset)
    assert env["LEARNING_RATE"] == "0.1"
    assert env["PATH"] == os.environ["PATH"]
    assert "MURMUR_DAEMON_SECRET" not in env


async def test_a_run_without_gpus_sees_none(runtime: ProcessRuntime, runs_dir: Path) -> None:
    env = await job_env(runtime, lambda argv: launch_spec(runs_dir, argv))

    assert env["CUDA_VISIBLE_DEVICES"] == ""


async def test_the_workdir_is_honoured_and_defaults_to_a_scratch_dir(
    runtime: ProcessRuntime, runs_dir: Path, tmp_path: Path
) -> None:
    chosen = launch_spec(runs_dir, ("pwd",), workdir=str(tmp_path))
    default = launch_spec(runs_dir, ("pwd",))

    await run_to_end(runtime, chosen)
    await run_to_end(runtime, default)

    assert output(chosen) == [str(tmp_path)]
    # Outside the run's directory, which stays the daemon's alone.
    assert output(default) == [str(runs_dir.parent.resolve() / "work" / default.run_id)]


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A real virtualenv (without pip: fast, and enough to have its own prefix)."""
    path = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


async def test_a_virtualenv_run_uses_the_venv_python(
    runtime: ProcessRuntime, runs_dir: Path, venv: Path
) -> None:
    spec = launch_spec(runs_dir, ("python", "-c", "import sys; print(sys.prefix)"), venv=venv)

    assert await run_to_end(runtime, spec) == RunExit(0, "exited with code 0")
    assert output(spec) == [str(venv)]


async def test_a_conda_env_goes_first_on_path(
    runtime: ProcessRuntime, runs_dir: Path, tmp_path: Path
) -> None:
    conda_env = tmp_path / "conda-env"
    (conda_env / "conda-meta").mkdir(parents=True)
    (conda_env / "bin").mkdir()
    trainer = conda_env / "bin" / "trainer"
    trainer.write_text('#!/bin/sh\necho "trained in $CONDA_PREFIX"\n')
    trainer.chmod(0o755)

    spec = launch_spec(runs_dir, ("trainer",), conda_env=conda_env)

    assert await run_to_end(runtime, spec) == RunExit(0, "exited with code 0")
    assert output(spec) == [f"trained in {conda_env}"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"venv": Path("/nonexistent/venv")},
            "not a virtualenv: /nonexistent/venv (no bin/python)",
        ),
        ({"conda_env": Path("/tmp")}, "not a conda env: /tmp (no conda-meta/)"),
        ({"workdir": "/nonexistent/dir"}, "working directory not found: /nonexistent/dir"),
        ({"workdir": "/etc/hostname"}, "working directory is not a directory: /etc/hostname"),
    ],
)
async def test_an_unusable_environment_or_workdir_starts_nothing(
    runtime: ProcessRuntime, runs_dir: Path, overrides: dict[str, Any], message: str
) -> None:
    spec = launch_spec(runs_dir, ("true",), **overrides)

    with pytest.raises(RuntimeStartError) as raised:
        await runtime.start(spec)

    assert str(raised.value) == message
    assert not (spec.files.directory / SUPERVISOR_FILE).exists()


async def test_a_missing_command_fails_the_start_and_leaves_nothing_running(
    runtime: ProcessRuntime, runs_dir: Path
) -> None:
    spec = launch_spec(runs_dir, ("trainx", "--epochs", "3"))

    with pytest.raises(RuntimeStartError, match=r"^command not found: trainx$"):
        await runtime.start(spec)

    supervisor = read_json(spec.files.directory / SUPERVISOR_FILE)
    assert supervisor is not None
    assert not is_running(supervisor["pid"], supervisor["start_time"])


async def test_a_run_id_is_started_only_once(runtime: ProcessRuntime, runs_dir: Path) -> None:
    spec = launch_spec(runs_dir, ("true",))
    await run_to_end(runtime, spec)

    with pytest.raises(RuntimeStartError, match="already started"):
        await runtime.start(spec)


async def test_stop_ends_a_run_that_honours_sigterm(
    runtime: ProcessRuntime, runs_dir: Path
) -> None:
    spec = launch_spec(runs_dir, ("sleep", "60"))
    handle = await runtime.start(spec)
    waiting = asyncio.create_task(runtime.wait(handle))

    await runtime.stop(handle, grace_seconds=SETTLE_SECONDS)

    assert await asyncio.wait_for(waiting, SETTLE_SECONDS) == RunExit(
        143, "killed by signal SIGTERM"
    )
    assert not is_running(*job_pid(spec))
    assert handle.pid is not None
    assert not is_running(handle.pid, handle.pid_start_time)


async def test_stop_kills_a_run_that_ignores_sigterm(
    runtime: ProcessRuntime, runs_dir: Path
) -> None:
    spec = launch_spec(runs_dir, ("sh", "-c", 'trap "" TERM; echo ready; sleep 60'))
    handle = await runtime.start(spec)
    await wait_for_output(spec, "ready")

    await runtime.stop(handle, grace_seconds=0.3)

    assert await runtime.wait(handle) == RunExit(137, "killed by signal SIGKILL")
    assert not is_running(*job_pid(spec))


async def test_stop_is_safe_to_repeat_and_after_the_end(
    runtime: ProcessRuntime, runs_dir: Path
) -> None:
    spec = launch_spec(runs_dir, ("true",))
    handle = await runtime.start(spec)
    assert await runtime.wait(handle) == RunExit(0, "exited with code 0")

    await runtime.stop(handle, grace_seconds=1)
    await runtime.stop(handle, grace_seconds=1)

    assert await runtime.wait(handle) == RunExit(0, "exited with code 0")


async def test_a_run_whose_supervisor_dies_is_lost_and_its_job_killed(
    runtime: ProcessRuntime, runs_dir: Path
) -> None:
    spec = launch_spec(runs_dir, ("sleep", "60"))
    handle = await runtime.start(spec)
    job = job_pid(spec)
    assert handle.pid is not None
    waiting = asyncio.create_task(runtime.wait(handle))

    os.kill(handle.pid, signal.SIGKILL)

    assert await asyncio.wait_for(waiting, SETTLE_SECONDS) == RunExit(None, LOST_REASON)
    assert not is_running(*job)
    assert json.loads(spec.files.exit.read_text())["reason"] == LOST_REASON


async def test_recover_tells_lost_runs_from_ended_ones(
    runtime: ProcessRuntime, runs_dir: Path
) -> None:
    ended_spec = launch_spec(runs_dir, ("sh", "-c", "exit 4"))
    ended = await runtime.start(ended_spec)
    await runtime.wait(ended)
    lost_spec = launch_spec(runs_dir, ("sleep", "60"))
    lost = await runtime.start(lost_spec)
    assert lost.pid is not None
    os.kill(lost.pid, signal.SIGKILL)  # the job is left alone, as after a crash
    await until_gone(lost.pid, lost.pid_start_time)
    lost_job = job_pid(lost_spec)

    fresh = ProcessRuntime(runs_dir=runs_dir, node_name="node-1")
    recovered = await fresh.recover([ended, lost], lambda run_id: RunFiles(runs_dir / run_id))

    assert [(r.handle, r.exit) for r in recovered] == [
        (ended, RunExit(4, "exited with code 4")),
        (lost, RunExit(None, LOST_REASON)),
    ]
    assert not is_running(*lost_job)


async def test_a_run_whose_pid_was_not_stored_yet_is_adopted_not_lost(
    runtime: ProcessRuntime, runs_dir: Path
) -> None:
    """The daemon died after the supervisor started but before the store had its pid:
    the run is known (its record says "starting"), and it is alive."""
    spec = launch_spec(runs_dir, ("sleep", "30"))
    handle = await runtime.start(spec)
    job = job_pid(spec)
    unstored = RunHandle(handle.run_id, "process")

    fresh = ProcessRuntime(runs_dir=runs_dir, node_name="node-1")
    recovered = await fresh.recover([unstored], lambda run_id: RunFiles(runs_dir / run_id))

    assert [(r.handle, r.exit) for r in recovered] == [(handle, None)]
    assert is_running(*job)
    assert not spec.files.exit.exists()
    waiting = asyncio.create_task(fresh.wait(handle))
    await fresh.stop(handle, grace_seconds=SETTLE_SECONDS)
    assert await asyncio.wait_for(waiting, SETTLE_SECONDS) == RunExit(
        143, "killed by signal SIGTERM"
    )


@dataclass(frozen=True)
class KilledDaemon:
    handles: dict[str, RunHandle]
    fork_server_pid: int


@pytest.fixture
def killed_daemon(runs_dir: Path) -> KilledDaemon:
    """Runs started by a daemon stand-in (a real process) that was then SIGKILLed."""
    daemon = subprocess.Popen(
        [sys.executable, str(HELPER), str(runs_dir)],
        stdout=subprocess.PIPE,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT)},
    )
    assert daemon.stdout is not None
    with daemon.stdout:
        try:
            printed = daemon.stdout.readline()  # the helper dies or prints within seconds
        finally:
            daemon.kill()
            daemon.wait()
    assert printed, "the daemon stand-in exited before it started its runs"
    started = json.loads(printed)
    return KilledDaemon(
        handles={run_id: RunHandle(**fields) for run_id, fields in started["handles"].items()},
        fork_server_pid=started["fork_server_pid"],
    )


async def test_runs_survive_a_killed_daemon_and_are_found_again(
    runs_dir: Path, killed_daemon: KilledDaemon
) -> None:
    handles = killed_daemon.handles
    sleeper, short, orphan = handles["sleeper"], handles["short"], handles["orphan"]

    def files_of(run_id: str) -> RunFiles:
        return RunFiles(runs_dir / run_id)

    sleeper_spec = launch_spec(runs_dir, ("unused",), files=files_of("sleeper"))
    orphan_job = job_pid(launch_spec(runs_dir, ("unused",), files=files_of("orphan")))
    # With no daemon: output is still captured and exits are still recorded.
    await wait_for_output(sleeper_spec, "after")
    deadline = time.monotonic() + SETTLE_SECONDS
    while not files_of("short").exit.exists():
        assert time.monotonic() < deadline, "the short run's exit was not recorded"
        await asyncio.sleep(0.05)

    restarted = ProcessRuntime(runs_dir=runs_dir, node_name="node-1")
    recovered = await restarted.recover([sleeper, short], files_of)

    assert [(r.handle, r.exit) for r in recovered] == [
        (sleeper, None),
        (short, RunExit(5, "exited with code 5")),
    ]
    assert orphan.pid is not None
    assert not is_running(orphan.pid, orphan.pid_start_time)
    assert not is_running(*orphan_job)
    assert json.loads(files_of("orphan").exit.read_text())["reason"] == REAPED_REASON
    # Its fork server went with the daemon (end-of-file on its requests), its runs did not.
    deadline = time.monotonic() + SETTLE_SECONDS
    while (stat := read_stat(killed_daemon.fork_server_pid)) is not None and stat.state != "Z":
        assert time.monotonic() < deadline, "the fork server outlived its daemon"
        await asyncio.sleep(0.02)
    # The adopted run is managed like any other.
    assert sleeper.pid is not None
    assert process_start_time(sleeper.pid) == sleeper.pid_start_time
    waiting = asyncio.create_task(restarted.wait(sleeper))
    await restarted.stop(sleeper, grace_seconds=SETTLE_SECONDS)
    assert await asyncio.wait_for(waiting, SETTLE_SECONDS) == RunExit(
        143, "killed by signal SIGTERM"
    )


def test_procfs_reads_a_process_whose_name_holds_spaces_and_parens(tmp_path: Path) -> None:
    odd = tmp_path / "a) b (c"
    odd.symlink_to("/bin/sleep")
    with subprocess.Popen([str(odd), "30"]) as process:
        try:
            stat = read_stat(process.pid)
            assert stat is not None
            assert stat.pgid == os.getpgid(process.pid)
            assert stat.state in ("R", "S")
            own_start = process_start_time(os.getpid())
            assert own_start is not None
            assert stat.start_time >= own_start
            assert is_same_process(process.pid, stat.start_time)
            assert not is_same_process(process.pid, stat.start_time + 1)
            assert Path(f"/proc/{process.pid}/comm").read_text().strip() == "a) b (c"
        finally:
            process.kill()
    assert read_stat(process.pid) is None
    assert not is_running(process.pid, stat.start_time)
