"""What a job runtime is: start a run, wait for it, stop it, find it again after a restart.

Two runtimes implement this (``process`` and ``docker``). The node's job manager
talks only to this interface, so the same lifecycle, GPU pinning and restart
rules hold whichever runtime a job uses.

A runtime never blocks the event loop: Docker SDK calls and process spawning
run in worker threads. Every run writes its output, one JSON object per line,
to ``RunFiles.log_dir`` (see :mod:`murmur.node.agent.runtimes.run_log`), and its exit code to
``RunFiles.exit`` when the runtime can record one, so that an exit that
happens while the daemon is down is not forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class RuntimeStartError(Exception):
    """The run could not be started; the message is the reason shown to the user
    (e.g. "image murmur/train:1 is not present on node-3 and there is no registry")."""


@dataclass(frozen=True)
class RunFiles:
    """Where a run's files live on the node: ``<data_dir>/runs/<run_id>/``."""

    directory: Path

    @property
    def log_dir(self) -> Path:
        """The run's output: JSON-lines segments (:mod:`murmur.node.agent.runtimes.run_log`)."""
        return self.directory / "log"

    @property
    def exit(self) -> Path:
        """JSON ``{"exit_code": int | null, "reason": str, "finished_at": float}``."""
        return self.directory / "exit.json"


@dataclass(frozen=True)
class DatasetMount:
    name: str
    host_path: Path
    """Mounted read-only at ``/datasets/<name>`` (docker) or passed as this path (process)."""


@dataclass(frozen=True)
class RunAccount:
    """The Unix account a run's processes run under (:mod:`murmur.node.agent.runtimes.accounts`
    resolves it from the job's owner)."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    """Every group the account is in, its primary group included."""
    home: str

    @property
    def is_root(self) -> bool:
        return self.uid == 0


@dataclass(frozen=True)
class GangPlace:
    """Where a run stands in a gang (a multi-node job): what torchrun's environment
    says of it (``gang_environment``)."""

    node_rank: int
    nodes: int
    """Ranks in the gang, one per node."""
    local_world_size: int
    """Processes per rank: its GPUs (1 for a CPU-only gang)."""
    master_addr: str
    """Rank 0's node, as the cluster reaches it."""
    master_port: int
    """The rendezvous port on rank 0's node, chosen by the leader for this run."""


def gang_environment(gang: GangPlace | None) -> dict[str, str]:
    """torchrun's variables for a rank of a gang (nothing for a single-node run):
    ``MASTER_ADDR``, ``MASTER_PORT``, ``NNODES``, ``NODE_RANK``, ``LOCAL_WORLD_SIZE``
    and ``WORLD_SIZE`` (ranks times processes per rank), so that ``torchrun
    --nnodes=$NNODES --node-rank=$NODE_RANK --nproc-per-node=$LOCAL_WORLD_SIZE
    --master-addr=$MASTER_ADDR --master-port=$MASTER_PORT`` (or a script that reads
    them itself) finds the other ranks."""
    if gang is None:
        return {}
    return {
        "MASTER_ADDR": gang.master_addr,
        "MASTER_PORT": str(gang.master_port),
        "NNODES": str(gang.nodes),
        "NODE_RANK": str(gang.node_rank),
        "LOCAL_WORLD_SIZE": str(gang.local_world_size),
        "WORLD_SIZE": str(gang.nodes * gang.local_world_size),
    }


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a runtime needs to start one run. Already validated."""

    run_id: str
    job_id: str
    node_name: str
    argv: tuple[str, ...]
    shell: bool
    """Run ``argv`` through ``/bin/sh -c`` (the user asked for a shell explicitly)."""
    env: Mapping[str, str]
    workdir: str | None
    gpu_indices: tuple[int, ...]
    """Node-local GPU indices: ``CUDA_VISIBLE_DEVICES`` (process) or device requests (docker)."""
    cpus: float | None
    memory_bytes: int | None
    datasets: tuple[DatasetMount, ...]
    files: RunFiles
    image: str | None = None
    """Docker runtime: a locally present image (air-gapped sites have no registry)."""
    venv: Path | None = None
    """Process runtime: a virtualenv whose ``bin/`` goes first on PATH."""
    conda_env: Path | None = None
    """Process runtime: a conda env whose ``bin/`` goes first on PATH."""
    network_mode: str = "bridge"
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_grace_seconds: float = 10.0
    """How long a stop (cancel, preemption, time limit) waits between SIGTERM and
    SIGKILL: the run sees it as ``MURMUR_STOP_GRACE_SECONDS``, to checkpoint."""
    account: RunAccount | None = None
    """Whose Unix account runs it; ``None``: the daemon's own (runtime tests only —
    the run executor always resolves the job owner's)."""
    gang: GangPlace | None = None
    """Its place in a gang (a multi-node job); ``None`` for a single-node run."""
    port: int | None = None
    """A service replica's port on the node (``PORT``), where it listens on every
    interface; None for other runs."""
    port_name: str = ""
    """The port's name (``--port-name``): the replica also finds it in
    ``PORT_<NAME>``, for servers configured by a named variable."""
    stop_notice_dir: Path | None = None
    """Where the node writes the notice of a stop (:mod:`murmur.node.agent.runtimes.stop_notice`),
    named to the run by ``MURMUR_PREEMPT_DEADLINE``; ``None``: no notice (runtime tests)."""


@dataclass(frozen=True)
class RunHandle:
    """How to find a run again, persisted in the store before the run is reported started."""

    run_id: str
    runtime: str
    container_id: str = ""
    pid: int | None = None
    pid_start_time: int | None = None


@dataclass(frozen=True)
class RunExit:
    """How a run ended. ``exit_code`` is ``None`` when there is none (never started, lost)."""

    exit_code: int | None
    reason: str


@dataclass(frozen=True)
class RecoveredRun:
    """A run found at start-up: still running (``exit`` is None) or ended while we were down."""

    handle: RunHandle
    exit: RunExit | None


class Runtime(Protocol):
    """A way to run jobs. All methods are safe to call from the event loop."""

    name: str

    async def available(self) -> tuple[bool, str]:
        """Whether the runtime can start runs now, and if not, why (shown in status)."""
        ...

    async def start(self, spec: LaunchSpec) -> RunHandle:
        """Starts the run and returns once it is running.

        Raises:
            RuntimeStartError: the run cannot start; nothing is left behind.
        """
        ...

    async def wait(self, handle: RunHandle) -> RunExit:
        """Returns when the run has ended, with its exit code; records it in ``exit.json``."""
        ...

    async def stop(self, handle: RunHandle, *, grace_seconds: float) -> None:
        """SIGTERM, then SIGKILL after ``grace_seconds``. Returns once the run is gone."""
        ...

    async def recover(self, known: list[RunHandle], files_of: RunFilesOf) -> list[RecoveredRun]:
        """Finds runs after a daemon restart: ``known`` from the store, plus any the
        runtime can discover itself (docker labels). Unknown live runs are reaped."""
        ...

    async def cleanup(self, handle: RunHandle) -> None:
        """Releases what the run left (the container); its files stay for logs."""
        ...


class RunFilesOf(Protocol):
    def __call__(self, run_id: str) -> RunFiles: ...


def port_environment(spec: LaunchSpec) -> dict[str, str]:
    """A service replica's port in its environment: ``PORT``, and ``PORT_<NAME>``
    when the port is named (``PORT_HTTP``); nothing for other runs."""
    if spec.port is None:
        return {}
    env = {"PORT": str(spec.port)}
    if spec.port_name:
        env[f"PORT_{spec.port_name.upper()}"] = str(spec.port)
    return env
