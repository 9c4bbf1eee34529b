"""An in-memory stand-in for `murmur.AsyncClient`, and builders of cluster messages.

Snapshot tests need data that never changes (fixed times, names, telemetry); the
benchmark needs 200 nodes and 10,000 jobs. Both get them from here. The live
behaviour (streams, refusals) is tested against real nodes in test_live_*.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from murmur import MurmurError
from murmur.v1 import cluster_pb2, types_pb2

EPOCH = 1_790_000_000
"""A fixed 'now' (2026-09-21) for snapshot data; the app is given a clock stuck here."""
GIB = 1024**3


def make_node(
    name: str,
    *,
    gpus: int = 8,
    model: str = "A100-80GB",
    used: int = 0,
    utilization: list[int] | None = None,
    simulated: bool = False,
    leader: bool = False,
    state: types_pb2.NodeState.ValueType = types_pb2.NODE_STATE_ALIVE,
    runs_active: int = 0,
    address: str = "",
    measured_at: int = EPOCH,
) -> types_pb2.NodeInfo:
    devices = [
        types_pb2.GpuDevice(
            index=index,
            uuid=f"GPU-{name}-{index}",
            model=model,
            memory_total_bytes=80 * GIB,
            simulated=simulated,
        )
        for index in range(gpus)
    ]
    stats = []
    if not simulated:
        for index in range(gpus):
            util = (utilization or [0] * gpus)[index % len(utilization or [0])]
            stats.append(
                types_pb2.GpuStats(
                    index=index,
                    utilization_percent=util,
                    memory_used_bytes=util * 80 * GIB // 100,
                    temperature_celsius=35 + util // 3,
                    power_milliwatts=60_000 + util * 2_000,
                )
            )
    node = types_pb2.NodeInfo(
        name=name,
        address=address or f"10.0.{len(name)}.{sum(map(ord, name)) % 250}:7070",
        state=state,
        leader=leader,
        voter=leader,
        gpus=types_pb2.GpuInventory(
            source=types_pb2.GPU_SOURCE_SIMULATED if simulated else types_pb2.GPU_SOURCE_NVML,
            devices=devices,
        ),
        load=types_pb2.NodeLoad(
            gpus_free=gpus - used,
            gpu_stats=stats,
            cpu_percent=12.5,
            cpu_count=64,
            memory_used_bytes=200 * GIB,
            memory_total_bytes=512 * GIB,
            runs_active=runs_active,
        ),
        runtimes=["process", "docker"],
        version="0.1.0",
    )
    node.load.measured_at.FromSeconds(measured_at)
    return node


def make_job(
    job_id: str,
    *,
    user: str = "alice",
    name: str = "train",
    state: types_pb2.JobState.ValueType = types_pb2.JOB_STATE_RUNNING,
    gpus: int = 1,
    node: str = "",
    gpu_indices: Iterable[int] = (),
    queue: str = "",
    reason: str = "",
    queue_position: int = 0,
    age_seconds: int = 600,
) -> types_pb2.Job:
    job = types_pb2.Job(
        id=job_id,
        user=user,
        state=state,
        reason=reason,
        queue_position=queue_position,
        spec=types_pb2.JobSpec(
            name=name,
            queue=queue,
            runtime=types_pb2.JOB_RUNTIME_PROCESS,
            command=["python", "train.py", "--epochs", "10"],
            gpus=types_pb2.GpuRequest(count=gpus),
        ),
        attempts=1 if node else 0,
    )
    job.submitted_at.FromSeconds(EPOCH - age_seconds)
    if node:
        run = job.runs.add(
            id=f"{job_id}-r1", job_id=job_id, attempt=1, node=node, state=state,
            gpu_indices=list(gpu_indices), reason="started",
        )  # fmt: skip
        run.started_at.FromSeconds(EPOCH - age_seconds + 5)
    return job


def make_service(
    name: str,
    *,
    model: str = "",
    user: str = "alice",
    replicas: Iterable[tuple[str, str, int, bool]] = (),
    wanted: int | None = None,
    gpus: int = 1,
    aliases: Iterable[str] = (),
    age_seconds: int = 3600,
) -> types_pb2.Service:
    """A service; `replicas` are (job id, node, port, ready), by slot. A replica with a
    node runs (starting until ready); one without waits to be placed."""
    service = types_pb2.Service(
        spec=types_pb2.ServiceSpec(
            name=name, model=model or name, aliases=list(aliases),
            template=types_pb2.JobSpec(
                runtime=types_pb2.JOB_RUNTIME_PROCESS, gpus=types_pb2.GpuRequest(count=gpus)
            ),
        ),
        user=user,
    )  # fmt: skip
    for slot, (job_id, node, port, ready) in enumerate(replicas):
        state = types_pb2.JOB_STATE_RUNNING if node else types_pb2.JOB_STATE_PENDING
        reason = "" if node else "waiting: 1 GPU asked, none free"
        service.replicas.add(
            slot=slot, job_id=job_id, state=state, node=node, port=port, ready=ready,
            reason=reason,
        )  # fmt: skip
    service.spec.replicas = len(service.replicas) if wanted is None else wanted
    service.ready = sum(replica.ready for replica in service.replicas)
    service.created_at.FromSeconds(EPOCH - age_seconds)
    return service


@dataclass
class FakeCluster:
    """Serves fixed nodes, jobs, datasets, services and logs; records the actions asked
    of it.

    Streams send what they hold, then whatever is pushed with `push_node`/`push_job`.
    """

    nodes: list[types_pb2.NodeInfo] = field(default_factory=list)
    jobs: list[types_pb2.Job] = field(default_factory=list)
    datasets: list[types_pb2.Dataset] = field(default_factory=list)
    services: list[types_pb2.Service] = field(default_factory=list)
    events: list[types_pb2.Event] = field(default_factory=list)
    log_lines: list[types_pb2.LogLine] = field(default_factory=list)
    identity: types_pb2.Identity = field(
        default_factory=lambda: types_pb2.Identity(name="alice", role=types_pb2.ROLE_ADMIN)
    )
    attached_node: str = "gpu-01"
    address: str = "10.0.0.1:7070"
    refuse: dict[str, MurmurError] = field(default_factory=dict)
    """Method name → the error it raises instead of answering."""
    calls: list[tuple[str, str]] = field(default_factory=list)
    _node_queues: list[asyncio.Queue[types_pb2.NodeInfo]] = field(default_factory=list)
    _job_queues: list[asyncio.Queue[types_pb2.Job]] = field(default_factory=list)

    async def close(self) -> None:
        return None

    def _check(self, method: str, target: str = "") -> None:
        self.calls.append((method, target))
        if method in self.refuse:
            raise self.refuse[method]

    async def whoami(self, *, timeout: float | None = None) -> cluster_pb2.WhoAmIResponse:  # noqa: ASYNC109
        self._check("whoami")
        return cluster_pb2.WhoAmIResponse(identity=self.identity, node=self.attached_node)

    def push_node(self, node: types_pb2.NodeInfo) -> None:
        for queue in self._node_queues:
            queue.put_nowait(node)

    def push_job(self, job: types_pb2.Job) -> None:
        for queue in self._job_queues:
            queue.put_nowait(job)

    async def watch_nodes(self) -> AsyncIterator[types_pb2.NodeInfo]:
        self._check("watch_nodes")
        queue: asyncio.Queue[types_pb2.NodeInfo] = asyncio.Queue()
        self._node_queues.append(queue)
        for node in self.nodes:
            yield node
        while True:
            yield await queue.get()

    async def watch_jobs(self) -> AsyncIterator[types_pb2.Job]:
        self._check("watch_jobs")
        queue: asyncio.Queue[types_pb2.Job] = asyncio.Queue()
        self._job_queues.append(queue)
        for job in self.jobs:
            yield job
        while True:
            yield await queue.get()

    async def watch_events(
        self, *, since_id: int = 0, subject: str = ""
    ) -> AsyncIterator[types_pb2.Event]:
        self._check("watch_events", subject)
        for event in self.events:
            if not subject or event.subject == subject:
                yield event
        await asyncio.Event().wait()

    async def stream_logs(
        self,
        job_id: str,
        *,
        run_id: str = "",
        follow: bool = False,
        tail_lines: int = 0,
        from_offset: int = 0,
    ) -> AsyncIterator[types_pb2.LogLine]:
        self._check("stream_logs", job_id)
        for line in self.log_lines:
            if line.offset > from_offset:
                yield line
        if follow:
            await asyncio.Event().wait()

    async def list_datasets(self, *, node: str = "") -> list[types_pb2.Dataset]:
        self._check("list_datasets")
        return list(self.datasets)

    async def list_services(self) -> list[types_pb2.Service]:
        self._check("list_services")
        # Copies, as off the wire: a test changing its services changes no answer given.
        return [types_pb2.Service.FromString(s.SerializeToString()) for s in self.services]

    async def submit_job(self, spec: types_pb2.JobSpec) -> types_pb2.Job:
        self._check("submit_job", spec.name)
        job = types_pb2.Job(
            id=f"j-new{len(self.calls)}", spec=spec, user=self.identity.name,
            state=types_pb2.JOB_STATE_PENDING, reason="waiting: queued",
        )  # fmt: skip
        job.submitted_at.FromSeconds(EPOCH)
        return job

    async def cancel_job(self, job_id: str, *, reason: str = "") -> types_pb2.Job:
        self._check("cancel_job", job_id)
        job = next(job for job in self.jobs if job.id == job_id)
        cancelled = types_pb2.Job()
        cancelled.CopyFrom(job)
        cancelled.state = types_pb2.JOB_STATE_CANCELLED
        return cancelled

    async def drain_node(self, name: str, *, undrain: bool = False) -> types_pb2.NodeInfo:
        self._check("drain_node", name)
        node = next(node for node in self.nodes if node.name == name)
        drained = types_pb2.NodeInfo()
        drained.CopyFrom(node)
        drained.state = types_pb2.NODE_STATE_DRAINING
        return drained
