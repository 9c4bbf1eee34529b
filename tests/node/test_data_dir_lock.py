"""One daemon per data dir: the lock itself across processes, a second real daemon
refused with the holder's pid, and no child of the daemon keeping the lock after a
kill -9 of the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from murmur import AsyncClient, resolve_connect_config
from murmur.node.data_dir_lock import LOCK_FILE, lock_data_dir
from murmur.node.errors import StartupError
from murmur.v1 import cluster_pb2, types_pb2
from tests.support.cluster import eventually
from tests.support.nodes import Lab, NodeProcess, free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import os, sys, time
from pathlib import Path
from murmur.node.data_dir_lock import lock_data_dir

lock = lock_data_dir(Path(sys.argv[1]))
if sys.argv[2] == "fork":
    ready, told = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(told, b"x")  # the at-fork hook closed the lock before fork returned
        time.sleep(60)
        os._exit(0)
    os.read(ready, 1)  # not before: until then the child may still share the lock
    print(child, flush=True)
print("locked", flush=True)
time.sleep(60)
"""


@dataclass
class Holder:
    process: subprocess.Popen[str]
    child: int | None
    """A forked child of the holder that lives on, when asked for."""

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@contextlib.contextmanager
def holding(data_dir: Path, *, fork: bool = False) -> Iterator[Holder]:
    """Another process holding ``data_dir``'s lock, from the moment it took it; it
    (and its forked child) is killed at the end."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir), "fork" if fork else "plain"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stdout is not None
        child = int(process.stdout.readline()) if fork else None
        try:
            assert process.stdout.readline().strip() == "locked"
            yield Holder(process, child)
        finally:
            process.kill()
            if child is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir(mode=0o700)
    return path


def refusal(data_dir: Path, pid: int) -> str:
    return (
        f"data dir {data_dir} is in use by another murmur daemon (pid {pid}); stop it "
        "first, or pass --data-dir for a second node on this machine"
    )


def test_a_second_process_is_refused_by_pid_until_the_holder_is_killed(data_dir: Path) -> None:
    with holding(data_dir) as holder:
        with pytest.raises(StartupError) as refused:
            lock_data_dir(data_dir)
        assert str(refused.value) == refusal(data_dir, holder.process.pid)
        holder.kill()
        # kill -9 leaves nothing stale: the kernel dropped the lock with the process.
        with lock_data_dir(data_dir) as lock:
            assert lock.held
            assert (data_dir / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    assert not lock.held
    assert (data_dir / LOCK_FILE).read_text() == ""


def test_the_lock_is_per_opening_so_one_process_cannot_take_it_twice(data_dir: Path) -> None:
    first = lock_data_dir(data_dir)
    with pytest.raises(StartupError, match=f"in use by another murmur daemon \\(pid {os.getpid()}"):
        lock_data_dir(data_dir)
    first.release()
    first.release()  # idempotent
    lock_data_dir(data_dir).release()


def test_a_forked_child_does_not_keep_the_lock_after_its_parent_dies(data_dir: Path) -> None:
    with holding(data_dir, fork=True) as holder:
        assert holder.child is not None
        holder.kill()
        os.kill(holder.child, 0)  # the child lives on...
        with lock_data_dir(data_dir):  # ...without the lock
            pass


def test_an_unlockable_data_dir_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"cannot open .*daemon\.lock"):
        lock_data_dir(tmp_path / "missing")


# -- real daemons -----------------------------------------------------------------


def node_start(lab: Lab, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    port, join_port = free_ports()
    return subprocess.run(
        [sys.executable, "-m", "murmur", "node", "start", "--data-dir", str(data_dir),
         "--listen", f"127.0.0.1:{port}", "--join-listen", f"127.0.0.1:{join_port}", *args],
        env=lab.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


async def cluster_status(lab: Lab, node: NodeProcess) -> cluster_pb2.ClusterStatus:
    config = resolve_connect_config(node=node.address, identity=lab.admin_identity)
    async with AsyncClient(config) as client:
        return await client.status(timeout=5)


async def test_a_second_daemon_on_a_data_dir_in_use_is_refused_naming_the_pid(
    lab: Lab, ca_node: NodeProcess
) -> None:
    before = await eventually(
        lambda: cluster_status(lab, ca_node), lambda s: s.leader == "node-1", what="a leader"
    )
    token = lab.murmur("token", "create", "--node", ca_node.address)
    assert token.returncode == 0, token.stderr
    for args in ([], ["--join", ca_node.address, "--token", token.stdout.strip()]):
        result = node_start(lab, ca_node.data_dir, *args)
        assert result.returncode == 1, result
        assert result.stderr.strip().splitlines() == [
            f"murmur node: {refusal(ca_node.data_dir, ca_node.process.pid)}"
        ]
    # The first daemon goes on, alone: same leader, no new election, one node.
    assert ca_node.process.poll() is None
    after = await cluster_status(lab, ca_node)
    assert (after.leader, after.term, list(after.voters)) == (
        "node-1",
        before.term,
        ["node-1"],
    )
    assert [node.name for node in after.nodes] == ["node-1"]
    # The refused start left the running daemon's pid in the lock file.
    assert (ca_node.data_dir / LOCK_FILE).read_text() == f"{ca_node.process.pid}\n"


def lock_holders(lock: Path) -> set[int]:
    """Every process with ``lock`` open, by its /proc fd links."""
    target = str(lock.resolve())
    holders = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:  # gone, or not ours
            continue
        if target in links:
            holders.add(int(fd_dir.parent.name))
    return holders


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "job.gate"
    yield path
    path.touch()  # a failed test leaves no job waiting


async def test_kill_9_of_the_daemon_while_a_job_runs_leaves_its_data_dir_free(
    lab: Lab, tmp_path: Path, gate: Path
) -> None:
    node = lab.start_node("node-1", data_dir=lab.first_data_dir)
    lock = node.data_dir / LOCK_FILE
    pid_file = tmp_path / "job.pid"
    script = f"echo $$ > {pid_file}; while [ ! -e {gate} ]; do sleep 0.05; done"
    config = resolve_connect_config(node=node.address, identity=lab.admin_identity)
    async with AsyncClient(config) as client:
        job = await client.submit_job(
            types_pb2.JobSpec(runtime=types_pb2.JOB_RUNTIME_PROCESS, command=["sh", "-c", script])
        )
        await eventually(
            lambda: client.get_job(job.id),
            lambda j: j.state == types_pb2.JOB_STATE_RUNNING and pid_file.exists(),
            what="the job to run",
        )
    job_pid = int(pid_file.read_text())
    supervisor = parent_of(job_pid)
    # The daemon alone holds it: not its supervisors, nor the fork server.
    assert lock_holders(lock) == {node.process.pid}

    node.kill()
    os.kill(supervisor, 0)  # the run's supervisor and job outlive the daemon...
    os.kill(job_pid, 0)
    assert lock_holders(lock) == set()  # ...without the lock

    restarted = lab.restart(node)
    assert lock_holders(lock) == {restarted.process.pid}
    config = resolve_connect_config(node=restarted.address, identity=lab.admin_identity)
    async with AsyncClient(config) as client:
        adopted = await client.get_job(job.id)
        assert adopted.state == types_pb2.JOB_STATE_RUNNING, adopted.reason
        await asyncio.to_thread(gate.touch)
        ended = await eventually(
            lambda: client.get_job(job.id),
            lambda j: j.state == types_pb2.JOB_STATE_SUCCEEDED,
            what="the adopted job to succeed",
        )
        assert len(ended.runs) == 1
    # A clean stop gives it up too.
    assert restarted.terminate() == 0
    assert lock_holders(lock) == set()
    assert lock.read_text() == ""
