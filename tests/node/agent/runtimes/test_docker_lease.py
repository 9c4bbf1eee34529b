"""The docker runtime's lease guard against a real Docker engine (tests/support/docker_engine.py).

A run's container must stop once its lease has passed even when the daemon that
should stop it was killed: the leader re-places the job soon after. Every container
here runs with ``network_mode="none"`` and carries a node label unique to its test;
each test's finalizer force-removes whatever carries that label, after which the
guards exit by themselves (their container is gone).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from murmur.node.agent.runtimes.base import LaunchSpec, RecoveredRun, RunExit, RunFiles, RunHandle
from murmur.node.agent.runtimes.detached import PACKAGE_ROOT
from murmur.node.agent.runtimes.docker import DockerRuntime
from murmur.node.agent.runtimes.docker_engine import parse_engine_time
from murmur.node.agent.runtimes.docker_labels import LABEL_NODE, LABEL_RUN
from murmur.node.agent.runtimes.docker_lease import LEASE_STOP_FILE, lease_guard_running
from murmur.node.agent.runtimes.lease_file import (
    LEASE_GUARD_LOG,
    RunLeaseFile,
    mark_container_removed,
    read_lease,
    write_lease,
)
from murmur.node.agent.runtimes.lease_guard import LeaseGuard
from tests.support.docker_engine import DockerEngine

REPO_ROOT = Path(__file__).resolve().parents[4]
LEASE_SECONDS = 2.0
START_LEASE_SECONDS = 30.0
"""The lease a run starts with: it outlasts the start (client, image check, container,
guard) on a loaded machine; the test then shortens it to LEASE_SECONDS, which the
guard obeys at its next check (it reads ``lease.json`` afresh every time)."""
GRACE_SECONDS = 1.0
STOP_SLACK_SECONDS = 10.0
"""After the lease and its grace: the guard's one-second checks, its first import of the
docker SDK, the engine's stop, on a loaded machine."""
BOUND_SECONDS = 20.0
"""Upper bound of every polling loop here: a broken guard fails, it does not hang."""


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def runtime(docker_engine: DockerEngine, node_name: str, runs: Path) -> Iterator[DockerRuntime]:
    docker_runtime = DockerRuntime(
        node_name=node_name, runs_dir=runs, docker_host=docker_engine.host, network_mode="none"
    )
    yield docker_runtime
    docker_runtime.close()


def sleeper_spec(run_id: str, *, runs: Path, image: str) -> LaunchSpec:
    return LaunchSpec(
        run_id=run_id,
        job_id=f"job-{run_id}",
        node_name="node",
        argv=("sleep 60",),
        shell=True,
        env={},
        workdir=None,
        gpu_indices=(),
        cpus=None,
        memory_bytes=None,
        datasets=(),
        files=RunFiles(runs / run_id),
        image=image,
        network_mode="none",
    )


def grant_lease(run_dir: Path, seconds: float = LEASE_SECONDS) -> RunLeaseFile:
    """Writes the run's lease as the job manager does on a renewal."""
    lease = RunLeaseFile(
        expires_at=time.time() + seconds, lease_seconds=seconds, grace_seconds=GRACE_SECONDS
    )
    write_lease(run_dir, lease)
    return lease


def status(client: Any, container_id: str) -> str:
    return str(client.api.inspect_container(container_id)["State"]["Status"])


def finished_at(client: Any, container_id: str) -> float:
    stamp = parse_engine_time(client.api.inspect_container(container_id)["State"]["FinishedAt"])
    assert stamp is not None
    return stamp


def guard_pids(container_id: str) -> list[int]:
    """The live lease guards of a container (a zombie has no command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"murmur.node.agent.runtimes.lease_guard" in argv and container_id.encode() in argv:
            found.append(int(entry.name))
    return found


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND_SECONDS
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        await asyncio.sleep(0.05)


def assert_stopped_on_its_lease(client: Any, container_id: str, lease: RunLeaseFile) -> None:
    """Not before the lease passed, and soon after it."""
    ended = finished_at(client, container_id)
    assert lease.expires_at <= ended <= lease.expires_at + GRACE_SECONDS + STOP_SLACK_SECONDS


DAEMON_SCRIPT = """
import asyncio, dataclasses, json, sys, time
from pathlib import Path
from murmur.node.agent.runtimes.base import LaunchSpec, RunFiles
from murmur.node.agent.runtimes.docker import DockerRuntime
from murmur.node.agent.runtimes.lease_file import RunLeaseFile, write_lease

args = json.loads(sys.argv[1])

async def main():
    runs = Path(args["runs"])
    runtime = DockerRuntime(node_name=args["node"], runs_dir=runs, docker_host=args["host"],
                            network_mode="none")
    run_id = args["run_id"]
    # As the executor does: the lease is in the run's directory before the run starts
    # (a long one: the test shortens it once the run has started).
    write_lease(runs / run_id, RunLeaseFile(expires_at=time.time() + args["lease"],
                                            lease_seconds=args["lease"],
                                            grace_seconds=args["grace"]))
    spec = LaunchSpec(run_id=run_id, job_id="job-" + run_id, node_name=args["node"],
                      argv=("sleep 60",), shell=True, env={}, workdir=None, gpu_indices=(),
                      cpus=None, memory_bytes=None, datasets=(),
                      files=RunFiles(runs / run_id), image=args["image"], network_mode="none")
    print(json.dumps(dataclasses.asdict(await runtime.start(spec))), flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def test_the_guard_stops_the_container_after_the_daemon_is_killed(
    docker_engine: DockerEngine, node_name: str, runs: Path, client: Any
) -> None:
    run_id = f"orphaned-{node_name}"
    run_dir = runs / run_id
    args = {
        "node": node_name,
        "runs": str(runs),
        "host": docker_engine.host,
        "image": docker_engine.image,
        "run_id": run_id,
        "lease": START_LEASE_SECONDS,
        "grace": GRACE_SECONDS,
    }
    daemon = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DAEMON_SCRIPT,
        json.dumps(args),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, killed whole below
    )
    try:
        assert daemon.stdout is not None
        line = await asyncio.wait_for(daemon.stdout.readline(), BOUND_SECONDS)
        assert line, "the daemon died before starting its run"
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)  # the daemon and its whole group: no clean-up
        _, errors = await daemon.communicate()
    assert daemon.returncode == -9, errors.decode()
    handle = RunHandle(**json.loads(line))
    first = read_lease(run_dir)
    assert first is not None
    assert status(client, handle.container_id) == "running"
    assert time.time() < first.expires_at, "the run took longer to start than its lease"
    # The daemon's last renewal before it died, a short one: nobody renews it any more.
    lease = grant_lease(run_dir)

    await until(lambda: status(client, handle.container_id) == "exited", "the guard to stop it")

    assert_stopped_on_its_lease(client, handle.container_id, lease)
    assert (run_dir / LEASE_STOP_FILE).exists()
    assert "stopping container" in (run_dir / LEASE_GUARD_LOG).read_text()
    await until(lambda: not guard_pids(handle.container_id), "the guard to exit")
    restarted = DockerRuntime(
        node_name=node_name, runs_dir=runs, docker_host=docker_engine.host, network_mode="none"
    )
    try:
        recovered = await restarted.recover([handle], lambda run: RunFiles(runs / run))
        await restarted.cleanup(handle)  # the container the guard stopped goes as any other
    finally:
        restarted.close()

    reason = (
        f"lost: no word from a leader for {LEASE_SECONDS:g} s (lease expired); "
        "stopped by the run's lease guard"
    )
    assert recovered == [RecoveredRun(handle, RunExit(143, reason))]
    assert json.loads(RunFiles(run_dir).exit.read_text())["reason"] == reason


async def test_a_renewed_lease_keeps_the_container_running(
    runtime: DockerRuntime, docker_engine: DockerEngine, runs: Path, node_name: str, client: Any
) -> None:
    spec = sleeper_spec(f"renewed-{node_name}", runs=runs, image=docker_engine.image)
    grant_lease(spec.files.directory, seconds=START_LEASE_SECONDS)  # outlasts a slow start
    handle = await runtime.start(spec)
    waiting = asyncio.create_task(runtime.wait(handle))

    # Short leases from here on, renewed for well past the first one's end and its grace.
    lease = grant_lease(spec.files.directory)
    renewed_until = lease.expires_at + 2 * GRACE_SECONDS + 1.0
    while time.time() < renewed_until:
        lease = grant_lease(spec.files.directory)
        await asyncio.sleep(0.5)
    assert status(client, handle.container_id) == "running"
    assert not waiting.done()
    assert len(guard_pids(handle.container_id)) == 1

    # No more renewals: the guard stops it on the last lease; the daemon's wait sees why.
    result = await asyncio.wait_for(waiting, BOUND_SECONDS)

    assert result.exit_code == 143
    assert result.reason.startswith(
        f"lost: no word from a leader for {LEASE_SECONDS:g} s (lease expired)"
    )
    assert_stopped_on_its_lease(client, handle.container_id, lease)
    await runtime.cleanup(handle)
    await until(lambda: not guard_pids(handle.container_id), "the guard to exit")


async def test_one_guard_per_container_and_it_ends_with_the_container(
    runtime: DockerRuntime, docker_engine: DockerEngine, runs: Path, node_name: str, client: Any
) -> None:
    spec = sleeper_spec(f"adopted-{node_name}", runs=runs, image=docker_engine.image)
    grant_lease(spec.files.directory, seconds=60.0)
    handle = await runtime.start(spec)
    await until(lambda: lease_guard_running(spec.files.directory), "the guard to lock")

    adopting = DockerRuntime(
        node_name=node_name, runs_dir=runs, docker_host=docker_engine.host, network_mode="none"
    )
    try:
        recovered = await adopting.recover([handle], lambda run: RunFiles(runs / run))
        assert recovered == [RecoveredRun(handle, None)]
        await asyncio.sleep(0.5)
        assert len(guard_pids(handle.container_id)) == 1
        await adopting.cleanup(handle)  # removes the container behind the guard's back
    finally:
        adopting.close()

    await until(lambda: not guard_pids(handle.container_id), "the guard to exit")
    assert not (spec.files.directory / LEASE_STOP_FILE).exists()


async def test_the_guard_leaves_other_containers_alone(
    docker_engine: DockerEngine, node_name: str, tmp_path: Path, client: Any
) -> None:
    other = await asyncio.to_thread(
        client.containers.run,
        docker_engine.image,
        ["sleep", "60"],
        detach=True,
        network_mode="none",
        labels={LABEL_NODE: node_name, LABEL_RUN: "other"},
    )
    grant_lease(tmp_path, seconds=-1.0)  # long passed

    for run_id, container_id in (("mine", other.id), ("other", other.id[:12])):
        guard = LeaseGuard(
            run_dir=tmp_path, run_id=run_id, container_id=container_id, host=docker_engine.host
        )
        assert await asyncio.to_thread(guard.run) == 0

    assert status(client, other.id) == "running"
    assert not (tmp_path / LEASE_STOP_FILE).exists()


def test_the_guard_keeps_asking_an_engine_that_does_not_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    grant_lease(tmp_path, seconds=-1.0)
    guard = LeaseGuard(
        run_dir=tmp_path,
        run_id="run-1",
        container_id="0" * 64,
        host=f"unix://{tmp_path / 'absent.sock'}",
    )

    with caplog.at_level(logging.INFO, logger="murmur.node.lease_guard"):
        assert guard.check()
        assert guard.check()

    unreachable = [r for r in caplog.records if "no engine answering" in r.getMessage()]
    assert len(unreachable) == 1  # once, not every second
    assert not (tmp_path / LEASE_STOP_FILE).exists()


def test_a_guard_whose_lease_holds_asks_the_engine_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    grant_lease(tmp_path, seconds=60.0)
    guard = LeaseGuard(
        run_dir=tmp_path,
        run_id="run-1",
        container_id="0" * 64,
        host=f"unix://{tmp_path / 'absent.sock'}",  # asking it would be logged
    )
    with caplog.at_level(logging.INFO, logger="murmur.node.lease_guard"):
        assert guard.check()
    assert not [r for r in caplog.records if "no engine answering" in r.getMessage()]


def test_a_guard_exits_once_the_runtime_removed_its_container(tmp_path: Path) -> None:
    grant_lease(tmp_path, seconds=60.0)
    guard = LeaseGuard(
        run_dir=tmp_path, run_id="run-1", container_id="0" * 64, host="unix:///absent.sock"
    )
    assert guard.check()
    mark_container_removed(tmp_path)
    assert not guard.check()


def test_a_guard_starts_without_the_docker_sdk() -> None:
    """The SDK costs a fresh guard ~0.15 s of CPU: only a guard that must ask the
    engine imports it."""
    imported = "sorted({'docker', 'requests'} & set(sys.modules))"
    probe = subprocess.run(
        [
            sys.executable, "-P", "-c",
            f"import sys, murmur.node.agent.runtimes.lease_guard; print({imported})",
        ],
        capture_output=True, text=True, check=True, cwd=PACKAGE_ROOT,
    )  # fmt: skip
    assert probe.stdout.strip() == "[]"
