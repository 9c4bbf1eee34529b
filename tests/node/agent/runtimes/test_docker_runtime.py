"""The docker runtime against a real Docker engine (tests/support/docker_engine.py).

Every container runs with ``network_mode="none"`` and carries a node label unique
to its test; each test's finalizer force-removes whatever carries that label.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import docker
import docker.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.node.agent.runtimes.base import (
    DatasetMount,
    GangPlace,
    LaunchSpec,
    RecoveredRun,
    RunAccount,
    RunExit,
    RunFiles,
    RunHandle,
    RuntimeStartError,
)
from murmur.node.agent.runtimes.docker import DockerRuntime
from murmur.node.agent.runtimes.docker_container import container_environment, container_options
from murmur.node.agent.runtimes.docker_engine import parse_engine_time
from murmur.node.agent.runtimes.docker_labels import LABEL_NODE, LABEL_RUN
from murmur.node.agent.runtimes.docker_logs import resume_points
from murmur.node.agent.runtimes.run_log import RunLogWriter, Stream, read_entries
from tests.support.docker_engine import (
    IMAGE,
    DockerEngine,
    EngineSource,
    choose_engine_source,
    engine_unavailable,
)

REPO_ROOT = Path(__file__).resolve().parents[4]
BOUND_SECONDS = 20.0
"""Upper bound of every polling loop here: a broken runtime fails, it does not hang."""

SpecMaker = Callable[..., LaunchSpec]


@pytest.fixture
def engine(docker_engine: DockerEngine) -> DockerEngine:
    return docker_engine


@pytest.fixture
def runtime(engine: DockerEngine, node_name: str, tmp_path: Path) -> Iterator[DockerRuntime]:
    docker_runtime = DockerRuntime(
        node_name=node_name,
        runs_dir=tmp_path / "runs",
        docker_host=engine.host,
        network_mode="none",
    )
    yield docker_runtime
    docker_runtime.close()


def launch_spec(run_id: str, command: str, *, runs: Path, **changes: Any) -> LaunchSpec:
    """A shell run of ``command`` on the test image, isolated from any network."""
    fields: dict[str, Any] = {
        "run_id": run_id,
        "job_id": f"job-{run_id}",
        "node_name": "node",
        "argv": (command,),
        "shell": True,
        "env": {},
        "workdir": None,
        "gpu_indices": (),
        "cpus": None,
        "memory_bytes": None,
        "datasets": (),
        "files": RunFiles(runs / run_id),
        "image": IMAGE,
        "network_mode": "none",
    }
    fields.update(changes)
    return LaunchSpec(**fields)


@pytest.fixture
def make_spec(engine: DockerEngine, node_name: str, tmp_path: Path) -> SpecMaker:
    def make(run_id: str, command: str, **changes: Any) -> LaunchSpec:
        """``run_id`` gets the node's suffix: container names stay unique across sessions."""
        changes = {"node_name": node_name, "image": engine.image, **changes}
        unique = f"{run_id}-{node_name}"
        return launch_spec(unique, command, runs=tmp_path / "runs", **changes)

    return make


def lines(spec: LaunchSpec, stream: str) -> list[str]:
    return [entry.text for entry in read_entries(spec.files.log_dir) if entry.stream == stream]


def node_containers(client: Any, node_name: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"{LABEL_NODE}={node_name}"}))


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND_SECONDS
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        await asyncio.sleep(0.05)


# -- with an engine ----------------------------------------------------------------------


async def test_output_reaches_the_log_by_stream(
    runtime: DockerRuntime, make_spec: SpecMaker
) -> None:
    spec = make_spec("out-1", "echo one; echo oops >&2; echo two; printf 'no newline'")

    handle = await runtime.start(spec)
    result = await runtime.wait(handle)

    assert handle.runtime == "docker"
    assert handle.container_id
    assert result == RunExit(0, "exited with code 0")
    assert lines(spec, "stdout") == ["one", "two", "no newline"]
    assert lines(spec, "stderr") == ["oops"]
    recorded = json.loads(spec.files.exit.read_text())
    assert (recorded["exit_code"], recorded["reason"]) == (0, "exited with code 0")


async def test_a_line_the_engine_cuts_in_parts_is_one_entry(
    runtime: DockerRuntime, make_spec: SpecMaker
) -> None:
    spec = make_spec("long-1", "yes x | head -c 80000 | tr -d '\\n'; echo; echo next")

    await runtime.wait(await runtime.start(spec))

    assert lines(spec, "stdout") == ["x" * 40000, "next"]


async def test_a_run_cannot_start_twice(
    runtime: DockerRuntime, make_spec: SpecMaker, client: Any, node_name: str
) -> None:
    spec = make_spec("twice-1", "sleep 60")
    handle = await runtime.start(spec)

    with pytest.raises(RuntimeStartError, match=spec.run_id):
        await runtime.start(spec)

    assert [c.id for c in node_containers(client, node_name)] == [handle.container_id]
    assert client.containers.get(handle.container_id).status == "running"


async def test_failing_job_exits_with_its_code(
    runtime: DockerRuntime, make_spec: SpecMaker, client: Any
) -> None:
    spec = make_spec("fail-1", "exit 3")

    handle = await runtime.start(spec)
    result = await runtime.wait(handle)

    assert result == RunExit(3, "exited with code 3")
    assert json.loads(spec.files.exit.read_text())["exit_code"] == 3
    assert client.containers.get(handle.container_id).status == "exited"  # kept for the code
    await runtime.cleanup(handle)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(handle.container_id)
    await runtime.cleanup(handle)  # idempotent


async def test_missing_image_is_refused_and_leaves_nothing(
    runtime: DockerRuntime, make_spec: SpecMaker, client: Any, node_name: str
) -> None:
    spec = make_spec("noimage-1", "true", image="murmur-test/absent:1")

    with pytest.raises(RuntimeStartError) as raised:
        await runtime.start(spec)

    message = str(raised.value)
    assert "murmur-test/absent:1" in message
    assert node_name in message
    assert "docker load" in message
    assert node_containers(client, node_name) == []


async def test_start_failure_removes_the_container(
    engine: DockerEngine,
    node_name: str,
    tmp_path: Path,
    make_spec: SpecMaker,
    client: Any,
) -> None:
    """A node with real GPUs asks the engine for them; this engine has no NVIDIA runtime."""
    gpu_runtime = DockerRuntime(
        node_name=node_name,
        runs_dir=tmp_path / "runs",
        docker_host=engine.host,
        network_mode="none",
        real_gpus=True,
    )
    try:
        with pytest.raises(RuntimeStartError, match="nvidia"):
            await gpu_runtime.start(make_spec("gpu-1", "true", gpu_indices=(0,)))
    finally:
        gpu_runtime.close()

    assert node_containers(client, node_name) == []


async def test_stop_ends_the_run_with_sigterm(
    runtime: DockerRuntime, make_spec: SpecMaker, client: Any
) -> None:
    handle = await runtime.start(make_spec("stop-1", "sleep 60"))

    await runtime.stop(handle, grace_seconds=20)
    result = await runtime.wait(handle)

    assert result == RunExit(143, "exited with code 143")  # 128 + SIGTERM: no SIGKILL needed
    assert client.containers.get(handle.container_id).status == "exited"
    await runtime.stop(handle, grace_seconds=1)  # stopping an ended run is harmless
    await runtime.cleanup(handle)
    await runtime.stop(handle, grace_seconds=1)  # and so is stopping a removed one


async def test_environment_gpus_and_read_only_datasets(
    runtime: DockerRuntime, make_spec: SpecMaker, tmp_path: Path
) -> None:
    dataset = tmp_path / "imagenet"
    dataset.mkdir()
    (dataset / "hello.txt").write_text("from the host\n")
    spec = make_spec(
        "env-1",
        "env; cat /datasets/imagenet-1k/hello.txt; "
        "if touch /datasets/imagenet-1k/new 2>/dev/null; then echo writable; "
        "else echo read-only; fi",
        env={"FOO": "bar", "MURMUR_JOB_ID": "spoofed"},
        gpu_indices=(1, 3),
        datasets=(DatasetMount(name="imagenet-1k", host_path=dataset),),
    )

    result = await runtime.wait(await runtime.start(spec))

    output = lines(spec, "stdout")
    assert result.exit_code == 0
    assert {
        "FOO=bar",
        f"MURMUR_JOB_ID=job-{spec.run_id}",
        f"MURMUR_RUN_ID={spec.run_id}",
        "CUDA_VISIBLE_DEVICES=1,3",
        "MURMUR_DATASET_IMAGENET_1K=/datasets/imagenet-1k",
        "from the host",
        "read-only",
    } <= set(output)
    assert not (dataset / "new").exists()


async def test_cpu_job_sees_no_gpus(runtime: DockerRuntime, make_spec: SpecMaker) -> None:
    spec = make_spec("cpu-1", 'echo "[$CUDA_VISIBLE_DEVICES]"')

    await runtime.wait(await runtime.start(spec))

    assert lines(spec, "stdout") == ["[]"]


async def test_limits_labels_and_isolation_are_set(
    runtime: DockerRuntime, make_spec: SpecMaker, client: Any, node_name: str
) -> None:
    spec = make_spec(
        "limits-1",
        "true",
        cpus=0.5,
        memory_bytes=64 * 2**20,
        labels={"team": "vision", LABEL_NODE: "not-this"},
    )

    handle = await runtime.start(spec)
    await runtime.wait(handle)

    attrs = client.containers.get(handle.container_id).attrs
    assert attrs["Name"] == f"/murmur-{spec.run_id}"
    assert attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert attrs["HostConfig"]["Memory"] == 64 * 2**20
    assert attrs["HostConfig"]["NetworkMode"] == "none"
    assert attrs["HostConfig"]["Init"] is True
    assert attrs["HostConfig"]["AutoRemove"] is False
    assert (
        attrs["Config"]["Labels"].items()
        >= {
            "team": "vision",
            "murmur.node": node_name,
            "murmur.run_id": spec.run_id,
            "murmur.job_id": f"job-{spec.run_id}",
        }.items()
    )


async def test_container_removed_behind_our_back_is_lost(
    runtime: DockerRuntime, make_spec: SpecMaker, client: Any
) -> None:
    spec = make_spec("vanish-1", "sleep 60")
    handle = await runtime.start(spec)
    waiting = asyncio.create_task(runtime.wait(handle))

    await asyncio.to_thread(client.containers.get(handle.container_id).remove, force=True)
    result = await waiting

    assert result == RunExit(None, "lost: container removed outside murmur")
    assert json.loads(spec.files.exit.read_text())["exit_code"] is None


async def test_available_names_the_engine(runtime: DockerRuntime, engine: DockerEngine) -> None:
    ok, detail = await runtime.available()

    assert ok
    assert engine.host in detail


DAEMON_SCRIPT = """
import asyncio, dataclasses, json, sys
from pathlib import Path
from murmur.node.agent.runtimes.base import LaunchSpec, RunFiles
from murmur.node.agent.runtimes.docker import DockerRuntime

args = json.loads(sys.argv[1])

async def main():
    runtime = DockerRuntime(node_name=args["node"], runs_dir=Path(args["runs"]),
                            docker_host=args["host"], network_mode="none")
    handles = {}
    for run_id, command in args["runs_to_start"].items():
        spec = LaunchSpec(run_id=run_id, job_id="job-" + run_id, node_name=args["node"],
                          argv=(command,), shell=True, env={}, workdir=None, gpu_indices=(),
                          cpus=None, memory_bytes=None, datasets=(),
                          files=RunFiles(Path(args["runs"]) / run_id), image=args["image"],
                          network_mode="none")
        handles[run_id] = dataclasses.asdict(await runtime.start(spec))
    print(json.dumps(handles), flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def test_recovery_after_the_daemon_is_killed(
    engine: DockerEngine, node_name: str, tmp_path: Path, client: Any
) -> None:
    runs = tmp_path / "runs"
    adopt_id, ends_id = f"adopt-{node_name}", f"ends-{node_name}"
    args = {
        "node": node_name,
        "runs": str(runs),
        "host": engine.host,
        "image": engine.image,
        "runs_to_start": {
            adopt_id: "echo before; sleep 2; echo after; sleep 30",
            ends_id: "sleep 1; exit 5",
        },
    }
    daemon = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DAEMON_SCRIPT,
        json.dumps(args),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert daemon.stdout is not None
        line = await asyncio.wait_for(daemon.stdout.readline(), BOUND_SECONDS)
        assert line, "the daemon died before starting its runs"
        handles = {run_id: RunHandle(**fields) for run_id, fields in json.loads(line).items()}
        adopt_log = RunFiles(runs / adopt_id).log_dir
        await until(
            lambda: any(e.text == "before" for e in read_entries(adopt_log)), "first output"
        )
    finally:
        daemon.kill()  # kill -9: no chance to clean up
        _, errors = await daemon.communicate()
    assert daemon.returncode == -9, errors.decode()
    orphan = client.containers.run(
        engine.image,
        ["sleep", "30"],
        detach=True,
        network_mode="none",
        labels={LABEL_NODE: node_name, LABEL_RUN: "orphan-1"},
    )
    ends = client.containers.get(handles[ends_id].container_id)
    adopt = client.containers.get(handles[adopt_id].container_id)
    await until(lambda: (ends.reload(), ends.status)[1] == "exited", "the second run to end")
    await until(lambda: b"after" in adopt.logs(), "output while the daemon was down")
    gone = RunHandle(run_id="gone", runtime="docker", container_id="0" * 64)

    restarted = DockerRuntime(
        node_name=node_name, runs_dir=runs, docker_host=engine.host, network_mode="none"
    )
    try:
        recovered = await restarted.recover(
            [handles[adopt_id], handles[ends_id], gone], lambda run_id: RunFiles(runs / run_id)
        )

        assert recovered == [
            RecoveredRun(handles[adopt_id], None),
            RecoveredRun(handles[ends_id], RunExit(5, "exited with code 5")),
            RecoveredRun(gone, RunExit(None, "lost: container is gone")),
        ]
        assert json.loads(RunFiles(runs / ends_id).exit.read_text())["exit_code"] == 5
        assert json.loads(RunFiles(runs / "gone").exit.read_text())["exit_code"] is None
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(orphan.id)
        await until(
            lambda: any(e.text == "after" for e in read_entries(adopt_log)), "resumed output"
        )

        await restarted.stop(handles[adopt_id], grace_seconds=5)
        result = await restarted.wait(handles[adopt_id])
    finally:
        restarted.close()

    assert result.exit_code == 143
    assert [e.text for e in read_entries(adopt_log)] == ["before", "after"]


# -- without an engine -------------------------------------------------------------------


def test_engine_source_prefers_docker_host_then_our_own() -> None:
    def choose(**changes: Any) -> tuple[EngineSource, str]:
        facts: dict[str, Any] = {
            "docker_host": "unix:///x.sock",
            "docker_host_answers": True,
            "own_answers": True,
            "is_root": True,
            "dockerd": "/usr/sbin/dockerd",
        }
        facts.update(changes)
        return choose_engine_source(**facts)

    assert choose()[0] is EngineSource.DOCKER_HOST
    assert choose(docker_host_answers=False)[0] is EngineSource.OWN_RUNNING
    assert choose(docker_host=None, own_answers=False)[0] is EngineSource.OWN_START
    source, reason = choose(docker_host_answers=False, own_answers=False, is_root=False)
    assert source is EngineSource.NONE
    assert "not root" in reason
    assert "DOCKER_HOST=unix:///x.sock does not answer" in reason
    source, reason = choose(docker_host=None, own_answers=False, dockerd=None)
    assert source is EngineSource.NONE
    assert "install-test-deps.sh" in reason


def test_no_engine_skips_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="the Docker tests cannot run: why"):
        engine_unavailable("why")

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        engine_unavailable("why")


def test_engine_times_are_parsed_to_the_nanosecond() -> None:
    assert parse_engine_time("2026-01-02T03:04:05.123456789Z") == pytest.approx(
        1767323045.123456789, abs=1e-6
    )
    assert parse_engine_time("2026-01-02T03:04:05Z") == 1767323045.0
    assert parse_engine_time("garbage") is None


def test_real_gpus_are_renumbered_inside_the_container(tmp_path: Path) -> None:
    spec = launch_spec("gpus", "true", runs=tmp_path, gpu_indices=(2, 5))

    assert container_environment(spec, real_gpus=True)["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert container_environment(spec, real_gpus=False)["CUDA_VISIBLE_DEVICES"] == "2,5"


LogLine = tuple[int, Stream, str]
"""(microseconds after a base time, stream, text)."""

log_lines = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3),
        st.sampled_from(["stdout", "stderr"]).map(lambda name: cast(Stream, name)),
        st.sampled_from(["a", "b", "c"]),
    ),
    max_size=30,
)


@given(lines_=log_lines, cut=st.integers(min_value=0, max_value=30))
def test_resuming_writes_each_line_once(lines_: list[LogLine], cut: int) -> None:
    """Whatever was written before a crash, replaying the engine's whole output through
    the resume points writes exactly the lines that were missing."""
    moment = 1_767_323_045.0
    timed = []
    for step, stream, text in lines_:
        moment += step / 1e6
        timed.append((round(moment, 6), stream, text))
    written, missing = timed[:cut], timed[cut:]
    with tempfile.TemporaryDirectory() as directory:
        writer = RunLogWriter(Path(directory))
        for at, stream, text in written:
            writer.write(stream, text, at=at)
        writer.close()
        points = resume_points(Path(directory))

    replayed = [
        (at, stream, text) for at, stream, text in timed if not points[stream].is_written(at, text)
    ]
    assert sorted(replayed) == sorted(missing)


async def test_unreachable_engine_is_reported_not_raised(tmp_path: Path) -> None:
    dead = f"unix://{tmp_path}/no-engine.sock"
    absent = DockerRuntime(node_name="n", runs_dir=tmp_path, docker_host=dead)

    ok, detail = await absent.available()
    with pytest.raises(RuntimeStartError, match="no engine answering"):
        await absent.start(launch_spec("dead-1", "true", runs=tmp_path))

    assert not ok
    assert detail.startswith(f"docker: no engine answering at {dead}: ")
    absent.close()


async def test_recovery_without_an_engine_is_quiet_unless_container_runs_wait(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A node without Docker recovers at every start: nothing to find is no error.
    A node whose engine is down while it holds container runs must say so."""
    dead = f"unix://{tmp_path}/no-engine.sock"
    absent = DockerRuntime(node_name="n", runs_dir=tmp_path, docker_host=dead)
    process_run = RunHandle(run_id="p", runtime="process", pid=1)
    container_run = RunHandle(run_id="c", runtime="docker", container_id="0" * 64)
    files_of = lambda run_id: RunFiles(tmp_path / run_id)  # noqa: E731

    with caplog.at_level("INFO", logger="murmur.node.runtimes"):
        assert await absent.recover([process_run], files_of) == []
    assert [r.levelname for r in caplog.records] == ["INFO"]

    caplog.clear()
    with caplog.at_level("INFO", logger="murmur.node.runtimes"):
        recovered = await absent.recover([process_run, container_run], files_of)
    assert recovered == [RecoveredRun(container_run, None)]
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    absent.close()


def test_the_runtime_imports_without_the_docker_sdk() -> None:
    """The daemon imports the runtime on every node, with or without an engine: the
    SDK (~80 ms, with requests) loads once the runtime first asks the engine."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-P",
            "-c",
            "import sys, murmur.node.agent.runtimes.docker; print(' '.join(sys.modules))",
        ],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()

    assert "murmur.node.agent.runtimes.docker" in loaded
    assert [m for m in loaded if m.split(".")[0] in {"docker", "requests", "urllib3"}] == []


def test_asking_an_absent_engine_does_not_load_the_sdk(tmp_path: Path) -> None:
    """A node without Docker asks at start-up and on every probe: the answer comes
    from the socket alone, so the SDK never weighs on its memory."""
    program = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from murmur.node.agent.runtimes.docker import DockerRuntime\n"
        f"runtime = DockerRuntime(node_name='n', runs_dir=Path({str(tmp_path)!r}),"
        f" docker_host='unix://{tmp_path}/no-engine.sock')\n"
        "print(asyncio.run(runtime.available()))\n"
        "print(' '.join(sys.modules))\n"
    )
    lines = subprocess.run(
        [sys.executable, "-P", "-c", program],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()

    assert lines[0].startswith("(False, 'docker: no engine answering at unix://")
    assert [m for m in lines[1].split() if m.split(".")[0] in {"docker", "requests"}] == []


async def test_a_container_runs_as_its_owner_with_no_capabilities(
    runtime: DockerRuntime, make_spec: SpecMaker, client: Any
) -> None:
    owner = RunAccount(name="alice", uid=4321, gid=4321, groups=(4321, 27), home="/")
    spec = make_spec(
        "owner-1",
        "id -u; id -g; id -G; grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status",
        account=owner,
    )

    handle = await runtime.start(spec)
    assert await runtime.wait(handle) == RunExit(0, "exited with code 0")

    uid, gid, groups, *status = lines(spec, "stdout")
    assert (uid, gid, sorted(groups.split())) == ("4321", "4321", ["27", "4321"])
    assert {line.split(":")[0]: line.split()[1] for line in status} == {
        "CapEff": "0000000000000000",
        "CapPrm": "0000000000000000",
        "CapBnd": "0000000000000000",
        "NoNewPrivs": "1",
    }
    host = client.containers.get(handle.container_id).attrs["HostConfig"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["NetworkMode"] == "none"


async def test_a_dataset_its_owner_cannot_read_is_refused_before_a_container_exists(
    runtime: DockerRuntime, make_spec: SpecMaker, client: Any, node_name: str, tmp_path: Path
) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    owner = RunAccount(name="alice", uid=4321, gid=4321, groups=(4321,), home="/")
    spec = make_spec("owner-2", "true", account=owner, datasets=(DatasetMount("closed", closed),))

    with pytest.raises(RuntimeStartError, match="dataset closed: account 'alice'"):
        await runtime.start(spec)

    assert node_containers(client, node_name) == []


def test_a_gangs_rank_gets_torchruns_variables_and_rank_0_publishes_its_port(
    tmp_path: Path,
) -> None:
    """On a bridge network the other ranks meet rank 0 at its node's address: its
    rendezvous port is published there; on the host's network nothing is needed."""
    gang = GangPlace(node_rank=0, nodes=2, local_world_size=4, master_addr="10.0.0.5",
                     master_port=29501)  # fmt: skip
    spec = launch_spec(
        "rank0", "true", runs=tmp_path, gpu_indices=(0, 1, 2, 3), gang=gang, network_mode="bridge"
    )
    env = container_environment(spec, real_gpus=True)
    assert {name: env[name] for name in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE")} == {
        "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29501", "WORLD_SIZE": "8",
    }  # fmt: skip
    assert (env["NODE_RANK"], env["NNODES"], env["LOCAL_WORLD_SIZE"]) == ("0", "2", "4")
    bridged = container_options(spec, node_name="n", network_mode="bridge", real_gpus=False)
    assert bridged["ports"] == {"29501/tcp": 29501}
    host = container_options(spec, node_name="n", network_mode="host", real_gpus=False)
    assert "ports" not in host
    rank_1 = dataclasses.replace(spec, gang=dataclasses.replace(gang, node_rank=1))
    assert "ports" not in container_options(
        rank_1, node_name="n", network_mode="bridge", real_gpus=False
    )
    single = launch_spec("single", "true", runs=tmp_path)
    assert "MASTER_ADDR" not in container_environment(single, real_gpus=False)


def test_a_container_reads_its_stop_notice_where_its_environment_says(tmp_path: Path) -> None:
    notices = tmp_path / "notices" / "run1"
    spec = launch_spec("run1", "true", runs=tmp_path, stop_notice_dir=notices)
    options = container_options(spec, node_name="n", network_mode="bridge", real_gpus=False)
    (mount,) = [m for m in options["mounts"] if m["Target"] == "/run/murmur"]
    assert (mount["Source"], mount["ReadOnly"]) == (str(notices), True)
    assert options["environment"]["MURMUR_PREEMPT_DEADLINE"] == "/run/murmur/stop"
