"""The node's job manager: the local queue, GPU allocation and every run's lifecycle.

One loop places pending jobs: it builds a snapshot of this node (its GPUs and
who holds them, free CPUs and memory), asks the pure ``scheduler`` for a plan,
and starts the placed runs. Each run then has one task that starts it through
its runtime, waits for it, enforces its time limit, and records how it ended.

Every transition is written in one store transaction together with the run's
record and the event that tells of it, so after a crash job, run and history
agree. A run's GPUs are taken in memory *before* its runtime is asked to start
it and given back only after its exit is recorded, so a GPU is never handed to
two runs. At start the manager first recovers what its runtimes still run
(adopting live runs, recording exits that happened while the daemon was down,
reaping what it does not know) and only then schedules anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

import scheduler
from node.broadcast import Broadcaster
from node.errors import FailedPreconditionError, PermissionDeniedError
from node.jobs import states
from node.jobs.convert import job_message
from node.jobs.validation import validate_job_spec
from node.runtimes.base import (
    DatasetMount,
    LaunchSpec,
    RecoveredRun,
    RunExit,
    RunFiles,
    RunHandle,
    Runtime,
    RuntimeStartError,
)
from proto.murmur.v1 import types_pb2
from storage import EventDraft, EventRecord, JobRecord, RunRecord, Store

_log = logging.getLogger("murmur.node.jobs")

RETRY_BACKOFF_MAX = timedelta(minutes=5)

GATHER_PASS_COSTS = 8.0
"""After only submissions woke the scheduler, it waits this many times the cost of its
last pass (a run ending cuts the wait short), so passes take at most about a ninth of
the event loop: a burst of submissions to a long queue is placed in a few passes, not
one pass each (a pass costs about 10 µs per pending job), while on a short queue the
wait is a fraction of a millisecond."""
GATHER_MAX_SECONDS = 0.1
"""At most this long: a job that could start at once waits no longer, however long the
queue behind which it was submitted."""

_RUNTIME_NAMES = {
    types_pb2.JOB_RUNTIME_DOCKER: "docker",
    types_pb2.JOB_RUNTIME_PROCESS: "process",
}


def retry_backoff(attempt: int, base: timedelta) -> timedelta:
    """base, 2 base, 4 base ... capped at 5 min: a crashing job does not spin the node."""
    backoff: timedelta = base * 2 ** max(0, attempt - 1)
    return min(RETRY_BACKOFF_MAX, backoff)


def _due(job: JobRecord, now: datetime) -> bool:
    return job.not_before is None or job.not_before <= now


def _handle_of(run: RunRecord) -> RunHandle:
    return RunHandle(
        run_id=run.id,
        runtime=run.runtime,
        container_id=run.container_id,
        pid=run.pid,
        pid_start_time=run.pid_start_time,
    )


@dataclass
class _ActiveRun:
    """A run that holds resources on this node: from "starting" until its exit is recorded."""

    record: RunRecord
    spec: types_pb2.JobSpec
    handle: RunHandle | None = None
    timed_out: bool = False
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class NodeResources:
    """What this node offers the scheduler; the GPU list comes from its probe."""

    gpus: tuple[tuple[int, str, int], ...]
    """(index, model, memory bytes) of each GPU."""
    cpus: float
    memory_bytes: int


class JobManager:
    def __init__(
        self,
        *,
        store: Store,
        node_name: str,
        runs_dir: Path,
        runtimes: Mapping[str, Runtime],
        resources: Callable[[], NodeResources],
        datasets: Callable[[], Mapping[str, Path]],
        stop_grace_seconds: float,
        retry_backoff_seconds: float = 5.0,
        path_roots: Collection[PurePosixPath] = (),
        network_mode: str = "bridge",
        on_event: Callable[[EventRecord], None] = lambda event: None,
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self._store = store
        self._draining = draining
        self._node = node_name
        self._runs_dir = runs_dir
        self._runtimes = dict(runtimes)
        self._resources = resources
        self._datasets = datasets
        self._grace = stop_grace_seconds
        self._retry_backoff = timedelta(seconds=retry_backoff_seconds)
        self._path_roots = path_roots
        self._network_mode = network_mode
        self._on_event = on_event
        self._active: dict[str, _ActiveRun] = {}
        self._pending: dict[str, tuple[JobRecord, types_pb2.JobSpec]] = {}
        """Pending jobs, in memory: the scheduler reads them on every pass."""
        self._waiting: dict[str, tuple[str, int]] = {}
        """Why each pending job waits, and its queue position, from the last pass. Kept in
        memory only: it changes with every pass and is recomputed after a restart."""
        self._wake = asyncio.Event()
        self._run_ended = asyncio.Event()
        """Set with ``_wake`` when a run gave its resources back: a pass is due now."""
        self._lock = asyncio.Lock()
        self._tasks: asyncio.TaskGroup | None = None
        self.updates: Broadcaster[types_pb2.Job] = Broadcaster(queue_size=4096)

    # ------------------------------------------------------------------ queries

    def reschedule(self) -> None:
        """Run a scheduling pass soon: something the pass reads changed (a drain)."""
        self._wake.set()

    def gpu_holders(self) -> dict[int, str]:
        """GPU index → job id, for every GPU a run holds now."""
        return {
            index: run.record.job_id
            for run in self._active.values()
            for index in run.record.gpu_indices
        }

    def run_is_active(self, run_id: str) -> bool:
        """Whether the run still holds resources (its end is not recorded yet)."""
        return run_id in self._active

    @property
    def active_run_count(self) -> int:
        return len(self._active)

    def files_of(self, run_id: str) -> RunFiles:
        return RunFiles(self._runs_dir / run_id)

    async def describe(self, job_id: str) -> types_pb2.Job:
        job = await self._store.get_job(job_id)
        return await self._message(job)

    async def _message(self, job: JobRecord) -> types_pb2.Job:
        # A job gets its first run in the transaction that sets attempts to 1: one
        # never tried has none, and a scheduling pass describes many such jobs.
        runs = await self._store.list_runs(job_id=job.id) if job.attempts else []
        position = 0
        if job.state == states.PENDING and job.id in self._waiting:
            reason, position = self._waiting[job.id]
            if not job.not_before:  # a backed-off job keeps its "retrying in ..." reason
                job = dataclasses.replace(job, reason=reason)
        return job_message(job, runs, queue_position=position)

    def _track(self, job: JobRecord) -> None:
        """Keeps the in-memory pending set in step with what the store says."""
        if job.state == states.PENDING and not job.cancel_reason:
            spec = self._pending[job.id][1] if job.id in self._pending else None
            self._pending[job.id] = (job, spec or types_pb2.JobSpec.FromString(job.spec))
        else:
            self._pending.pop(job.id, None)
            self._waiting.pop(job.id, None)

    async def list_jobs(
        self,
        *,
        states_filter: tuple[str, ...],
        user: str | None,
        queue: str | None,
        after_order: int,
        limit: int,
    ) -> list[tuple[JobRecord, types_pb2.Job]]:
        jobs = await self._store.list_jobs(
            states=states_filter, user=user, queue=queue, after_order=after_order, limit=limit
        )
        return [(job, await self._message(job)) for job in jobs]

    # ----------------------------------------------------------------- commands

    async def submit(
        self, spec: types_pb2.JobSpec, *, user: str, idempotency_key: str
    ) -> types_pb2.Job:
        validated = validate_job_spec(
            spec, known_datasets=set(self._datasets()), path_roots=self._path_roots
        )
        now = datetime.now(UTC)
        job_id = uuid.uuid4().hex[:12]
        record = JobRecord(
            id=job_id,
            submit_order=0,
            spec=validated.spec.SerializeToString(),
            user=user,
            queue=validated.spec.queue,
            state=states.PENDING,
            reason="queued",
            submitted_at=now,
            updated_at=now,
            attempts=0,
            exit_code=None,
            not_before=None,
            cancel_reason="",
            idempotency_key=idempotency_key[:128],
        )
        stored, event = await self._store.insert_job(
            record,
            event=EventDraft(
                "job.submitted", job_id, f"submitted by {user}", job_state=states.PENDING
            ),
        )
        if event is not None:
            self._on_event(event)
        self._track(stored)
        message = await self._message(stored)
        if stored.id == job_id:
            self.updates.publish(message)
            self._wake.set()
        return message

    async def cancel(self, job_id: str, *, user: str, is_admin: bool, reason: str) -> types_pb2.Job:
        async with self._lock:
            job = await self._store.get_job(job_id)
            if job.user != user and not is_admin:
                raise PermissionDeniedError(
                    f"job {job_id} belongs to {job.user}; only they or an admin may cancel it"
                )
            if job.is_terminal:
                raise FailedPreconditionError(f"job {job_id} already ended: {job.state}")
            why = f"cancelled by {user}" + (f": {reason}" if reason else "")
            active = [run for run in self._active.values() if run.record.job_id == job_id]
            if not active:
                job = await self._transition(job, states.CANCELLED, why, cancel_reason=why)
                return await self._message(job)
            job = dataclasses.replace(job, cancel_reason=why, updated_at=datetime.now(UTC))
            await self._record(
                job=job, event=EventDraft("job.cancel", job_id, f"{why}; stopping the run")
            )
            for run in active:
                run.stop_requested.set()
        return await self._message(job)

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Recovers, then schedules until cancelled; owns every run's task."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            for job in await self._store.list_jobs(states=(states.PENDING,), limit=10_000_000):
                self._track(job)
            await self._recover()
            loop = asyncio.get_running_loop()
            while True:
                # Cleared before the pass: a run that ends during it wakes the next one.
                self._wake.clear()
                self._run_ended.clear()
                began = loop.time()
                delay = await self._schedule_pass()
                cost = loop.time() - began
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                if not self._run_ended.is_set():
                    # A pass costs in proportion to the queue: let a burst of submissions
                    # gather rather than pay one pass per submission.
                    gather = min(GATHER_MAX_SECONDS, GATHER_PASS_COSTS * cost)
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._run_ended.wait(), timeout=gather)

    def _spawn(self, run: _ActiveRun, job_spec_limit: timedelta | None) -> None:
        assert self._tasks is not None
        self._tasks.create_task(self._lifecycle(run, job_spec_limit), name=f"run-{run.record.id}")

    async def _schedule_pass(self) -> float | None:
        """Places what fits; returns seconds until a backed-off job becomes eligible."""
        async with self._lock:
            now = datetime.now(UTC)
            pending = list(self._pending.values())
            eligible = [job for job, _ in pending if _due(job, now)]
            later = [job.not_before for job, _ in pending if job.not_before and not _due(job, now)]
            specs = {job.id: spec for job, spec in pending}
            plan = scheduler.schedule(self._snapshot(eligible, specs))
            by_id = {job.id: job for job in eligible}
            for placement in plan.placements:
                await self._launch(by_id[placement.job_id], specs[placement.job_id], placement)
            moved = []
            for waiting in plan.waiting:
                before = self._waiting.get(waiting.job_id)
                self._waiting[waiting.job_id] = (waiting.reason, waiting.position)
                if before != (waiting.reason, waiting.position):
                    moved.append(by_id[waiting.job_id])
        # When one job leaves the queue every waiting job's position changes: describing
        # hundreds of them must not hold the lock that runs starting or ending need. A
        # job that changed meanwhile is skipped; whoever changed it published it.
        for job in moved:
            message = await self._message(job)
            current = self._pending.get(job.id)
            if current is not None and current[0] is job:
                self.updates.publish(message)
        if not later:
            return None
        return max(0.05, (min(later) - datetime.now(UTC)).total_seconds())

    def _snapshot(
        self, jobs: list[JobRecord], specs: Mapping[str, types_pb2.JobSpec]
    ) -> scheduler.ClusterSnapshot:
        resources = self._resources()
        draining = self._draining()
        holders: dict[int, list[str]] = {}
        shared: dict[int, bool] = {}
        cpus_used = 0.0
        memory_used = 0
        for run in self._active.values():
            for index in run.record.gpu_indices:
                holders.setdefault(index, []).append(run.record.job_id)
                shared[index] = shared.get(index, True) and run.spec.gpus.share
            cpus_used += run.spec.cpus
            memory_used += run.spec.memory_bytes
        node = scheduler.NodeState(
            name=self._node,
            gpus=tuple(
                scheduler.GpuState(
                    index=index,
                    model=model,
                    memory_bytes=memory,
                    holders=tuple(holders.get(index, ())),
                    shared=shared.get(index, False),
                )
                for index, model, memory in resources.gpus
            ),
            cpus_total=resources.cpus,
            cpus_free=max(0.0, resources.cpus - cpus_used),
            memory_total_bytes=resources.memory_bytes,
            memory_free_bytes=max(0, resources.memory_bytes - memory_used),
            datasets=frozenset(self._datasets()),
            schedulable=not draining,
            unschedulable_reason="draining" if draining else "",
        )
        requests = tuple(
            scheduler.JobRequest(
                id=job.id,
                user=job.user,
                queue=job.queue,
                priority=specs[job.id].priority,
                submit_order=job.submit_order,
                gpus=specs[job.id].gpus.count,
                gpu_model=specs[job.id].gpus.model,
                gpu_share=specs[job.id].gpus.share,
                cpus=specs[job.id].cpus,
                memory_bytes=specs[job.id].memory_bytes,
                datasets=tuple(specs[job.id].datasets),
                nodes=max(1, specs[job.id].nodes),
            )
            for job in jobs
        )
        return scheduler.ClusterSnapshot(nodes=(node,), pending=requests)

    async def _launch(
        self, job: JobRecord, spec: types_pb2.JobSpec, placement: scheduler.Placement
    ) -> None:
        (assignment,) = placement.assignments  # one node: gangs wait until the cluster grows
        attempt = job.attempts + 1
        now = datetime.now(UTC)
        run = RunRecord(
            id=f"{job.id}.{attempt}",
            job_id=job.id,
            attempt=attempt,
            node=self._node,
            state=states.STARTING,
            gpu_indices=tuple(assignment.gpu_indices),
            container_id="",
            pid=None,
            pid_start_time=None,
            exit_code=None,
            reason="starting",
            term=0,
            sequence=0,
            created_at=now,
            started_at=None,
            finished_at=None,
            runtime=_RUNTIME_NAMES[spec.runtime],
        )
        gpus = ",".join(str(i) for i in run.gpu_indices) or "none"
        job = dataclasses.replace(
            job, state=states.STARTING, reason=f"starting on {self._node} (GPUs {gpus})",
            attempts=attempt, updated_at=now, not_before=None,
        )  # fmt: skip
        await self._record(
            job=job,
            runs_changed=(run,),
            event=EventDraft("job.state", job.id, job.reason, job_state=states.STARTING),
        )
        active = _ActiveRun(record=run, spec=spec)
        self._active[run.id] = active
        self.updates.publish(await self._message(job))
        limit = spec.time_limit.ToTimedelta() if spec.HasField("time_limit") else None
        self._spawn(active, limit)

    def _launch_spec(self, run: _ActiveRun) -> LaunchSpec:
        spec = run.spec
        datasets = self._datasets()
        return LaunchSpec(
            run_id=run.record.id,
            job_id=run.record.job_id,
            node_name=self._node,
            argv=tuple(spec.command),
            shell=spec.shell,
            env=dict(spec.env),
            workdir=spec.workdir or None,
            gpu_indices=run.record.gpu_indices,
            cpus=spec.cpus or None,
            memory_bytes=spec.memory_bytes or None,
            datasets=tuple(DatasetMount(name, datasets[name]) for name in spec.datasets),
            files=self.files_of(run.record.id),
            image=spec.image or None,
            venv=Path(spec.venv) if spec.venv else None,
            conda_env=Path(spec.conda_env) if spec.conda_env else None,
            network_mode=self._network_mode,
            labels=dict(spec.labels),
        )

    async def _lifecycle(self, run: _ActiveRun, time_limit: timedelta | None) -> None:
        """Starts (unless adopted), waits, enforces the time limit, records the end."""
        runtime = self._runtimes.get(run.record.runtime)
        try:
            if run.handle is None:
                if runtime is None:
                    raise RuntimeStartError(
                        f"the {run.record.runtime} runtime is not configured on {self._node}"
                    )
                ready, why = await runtime.available()
                if not ready:
                    raise RuntimeStartError(why)
                run.handle = await runtime.start(self._launch_spec(run))
                await self._started(run)
            assert runtime is not None
            exit_ = await self._wait(runtime, run, time_limit)
        except RuntimeStartError as exc:
            exit_ = RunExit(None, f"could not start: {exc}")
        except Exception as exc:  # a runtime bug must not lose the run's record
            _log.exception("run %s failed in its runtime", run.record.id)
            exit_ = RunExit(None, f"lost: runtime error: {exc}")
        try:
            await self._finish(run, exit_)
        except Exception:
            # The store failed: leave the run active; the next start recovers it.
            _log.exception("could not record the end of run %s", run.record.id)
            return
        if runtime is not None and run.handle is not None:
            try:
                await runtime.cleanup(run.handle)
            except Exception:
                _log.exception("cleanup of run %s failed", run.record.id)

    async def _wait(
        self, runtime: Runtime, run: _ActiveRun, time_limit: timedelta | None
    ) -> RunExit:
        assert run.handle is not None
        waiter = asyncio.ensure_future(runtime.wait(run.handle))
        stopper = asyncio.ensure_future(run.stop_requested.wait())
        deadline = None
        if time_limit is not None:
            started = run.record.started_at or datetime.now(UTC)
            deadline = max(0.0, (started + time_limit - datetime.now(UTC)).total_seconds())
        try:
            done, _ = await asyncio.wait(
                {waiter, stopper}, timeout=deadline, return_when=asyncio.FIRST_COMPLETED
            )
            if waiter not in done:
                run.timed_out = stopper not in done
                await runtime.stop(run.handle, grace_seconds=self._grace)
            return await waiter
        finally:
            stopper.cancel()
            if not waiter.done():
                waiter.cancel()

    async def _started(self, run: _ActiveRun) -> None:
        assert run.handle is not None
        async with self._lock:
            now = datetime.now(UTC)
            record = dataclasses.replace(
                run.record, state=states.RUNNING, reason="running", started_at=now,
                container_id=run.handle.container_id, pid=run.handle.pid,
                pid_start_time=run.handle.pid_start_time,
            )  # fmt: skip
            run.record = record
            job = await self._store.get_job(record.job_id)
            what = f"running on {self._node}" + (f" (pid {record.pid})" if record.pid else "")
            job = dataclasses.replace(job, state=states.RUNNING, reason=what, updated_at=now)
            await self._record(
                job=job, runs_changed=(record,),
                event=EventDraft("job.state", job.id, what, job_state=states.RUNNING),
            )  # fmt: skip
        self.updates.publish(await self._message(job))
        if job.cancel_reason:
            run.stop_requested.set()

    async def _finish(self, run: _ActiveRun, exit_: RunExit) -> None:
        async with self._lock:
            job = await self._store.get_job(run.record.job_id)
            spec = run.spec
            if job.cancel_reason:
                run_state, reason = states.CANCELLED, job.cancel_reason
            elif run.timed_out:
                limit = spec.time_limit.ToTimedelta()
                run_state, reason = states.FAILED, f"time limit {limit} exceeded; stopped"
            elif exit_.exit_code == 0:
                run_state, reason = states.SUCCEEDED, exit_.reason or "exited with code 0"
            elif exit_.exit_code is None and exit_.reason.startswith("lost"):
                run_state, reason = states.LOST, exit_.reason
            else:
                run_state, reason = (
                    states.FAILED,
                    exit_.reason or f"exited with code {exit_.exit_code}",
                )
            now = datetime.now(UTC)
            record = dataclasses.replace(
                run.record, state=run_state, reason=reason, exit_code=exit_.exit_code,
                finished_at=now,
            )  # fmt: skip
            job_state, job_reason, not_before = run_state, reason, None
            retryable = run_state in (states.FAILED, states.LOST) and not run.timed_out
            if (
                retryable
                and job.attempts <= spec.retries
                and not reason.startswith("could not start")
            ):
                backoff = retry_backoff(job.attempts, self._retry_backoff)
                not_before = now + backoff
                job_state = states.PENDING
                job_reason = (
                    f"retrying in {backoff.total_seconds():.0f}s after: {reason} "
                    f"(attempt {job.attempts + 1} of {spec.retries + 1} next)"
                )
            job = dataclasses.replace(
                job, state=job_state, reason=job_reason, exit_code=exit_.exit_code,
                not_before=not_before, updated_at=now,
            )  # fmt: skip
            await self._record(
                job=job, runs_changed=(record,),
                event=EventDraft(
                    "job.state", job.id, f"run {record.id}: {reason}", job_state=job_state
                ),
            )  # fmt: skip
            self._active.pop(record.id, None)
        self.updates.publish(await self._message(job))
        self._run_ended.set()
        self._wake.set()

    async def _transition(
        self, job: JobRecord, state: str, reason: str, *, cancel_reason: str = ""
    ) -> JobRecord:
        job = dataclasses.replace(
            job, state=state, reason=reason, updated_at=datetime.now(UTC),
            cancel_reason=cancel_reason or job.cancel_reason,
        )  # fmt: skip
        await self._record(job=job, event=EventDraft("job.state", job.id, reason, job_state=state))
        self.updates.publish(await self._message(job))
        return job

    async def _record(
        self,
        *,
        job: JobRecord | None = None,
        runs_changed: tuple[RunRecord, ...] = (),
        event: EventDraft | None = None,
    ) -> None:
        """One store transaction; the event it wrote goes to live watchers."""
        written = await self._store.record_transition(
            job=job, runs_changed=runs_changed, event=event
        )
        if job is not None:
            self._track(job)
        if written is not None:
            self._on_event(written)

    # ----------------------------------------------------------------- recovery

    async def _recover(self) -> None:
        """Adopts runs still alive, records exits that happened while we were down,
        and lets each runtime reap what the store does not know, before any placement."""
        active = await self._store.list_runs(active_only=True)
        handles = {run.id: _handle_of(run) for run in active}
        recovered: dict[str, RecoveredRun] = {}
        for name, runtime in self._runtimes.items():
            known = [h for h in handles.values() if h.runtime == name]
            try:
                results = await runtime.recover(known, self.files_of)
            except Exception:
                _log.exception("recovery of the %s runtime failed", name)
                continue
            for result in results:
                recovered[result.handle.run_id] = result
        for record in active:
            job = await self._store.get_job(record.job_id)
            spec = types_pb2.JobSpec.FromString(job.spec)
            found = recovered.get(record.id)
            run = _ActiveRun(record=record, spec=spec, handle=handles[record.id])
            if found is not None and found.exit is None:
                # Alive: adopt it, whatever state we last wrote (a crash right after
                # the runtime started it leaves "starting" in the store).
                _log.info(
                    "adopted run %s", record.id, extra={"event": "run.adopted", "run": record.id}
                )
                run.handle = found.handle
                self._active[record.id] = run
                if record.state != states.RUNNING:
                    await self._started(run)
                limit = spec.time_limit.ToTimedelta() if spec.HasField("time_limit") else None
                self._spawn(run, limit)
                if job.cancel_reason:
                    run.stop_requested.set()
                continue
            exit_ = (found.exit if found is not None else None) or RunExit(
                None, "lost: the node restarted and the run was not found"
            )
            await self._finish(run, exit_)
        # Jobs caught between "placed" and "run recorded" cannot exist (one transaction),
        # but a job left "starting"/"scheduled" without an active run goes back to the queue.
        for job in await self._store.list_jobs(
            states=(states.SCHEDULED, states.STARTING, states.RUNNING)
        ):
            if not any(run.record.job_id == job.id for run in self._active.values()):
                await self._transition(job, states.PENDING, "re-queued after a node restart")

    # -------------------------------------------------------------------- watch

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[asyncio.Queue[types_pb2.Job]]:
        async with self.updates.subscribe() as queue:
            yield queue
