"""The node's run executor: starts the runs a leader assigns here and sees each to its end.

The elected leader owns the queue and decides placement; it sends this node
assignments, each fenced by (term, sequence). The executor refuses an assignment, a
stop or a report request from a term older than the highest it has seen (kept in the
store, so a restart still refuses them), never gives a GPU to two runs unless both
asked to share, and starts a run id at most once: a repeated assignment gets the
run's current record back.

Each run has one task that starts it through its runtime, waits for it, enforces
its time limit, and records how it ended. Every transition is written in one store
transaction together with the run's record, the job's mirror row and the event that
tells of it, so after a crash run, job and history agree; ``on_run_change`` then
tells the leader. A run's GPUs are taken in memory before its runtime is asked to
start it and given back only after its end is recorded. No retry is decided here:
a failed run just ends, and the leader decides whether its job runs again.

Runs hold a lease from the leader (:mod:`murmur.node.agent.lease`), renewed by every
assignment and every report the leader asks for. When it lapses, the executor stops
its runs and records them lost: a leader re-places their jobs only after the lease
and a margin, so a job never runs twice at once. Each renewal is also written into
every run's directory (``lease.json``), where the process runtime's supervisor
enforces it even when the daemon was killed. At start the executor recovers what
its runtimes still run (adopting live runs, recording exits that happened while the
daemon was down, reaping what it does not know) before it takes any assignment.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from murmur.node.agent.lease import RunLease
from murmur.node.agent.replicas import ReplicaEndpoints
from murmur.node.agent.runtimes.accounts import AccountPolicy
from murmur.node.agent.runtimes.base import (
    DatasetMount,
    GangPlace,
    LaunchSpec,
    RecoveredRun,
    RunAccount,
    RunExit,
    RunFiles,
    RunHandle,
    Runtime,
    RuntimeStartError,
)
from murmur.node.agent.runtimes.lease_file import RunLeaseFile, write_lease
from murmur.node.agent.runtimes.stop_notice import StopNotices
from murmur.node.errors import FailedPreconditionError, InvalidArgumentError
from murmur.node.jobspec import states
from murmur.node.jobspec.paths import check_job_paths
from murmur.storage import EventDraft, EventRecord, JobRecord, RecordNotFoundError, RunRecord, Store
from murmur.v1 import types_pb2

_log = logging.getLogger("murmur.node.jobs")

RECENT_RUNS_SECONDS = 600.0
"""A report to the leader lists the runs that ended this recently besides the active
ones: a leader that took over, or missed a change, learns how they ended."""

LEASE_FILE_SLACK_SECONDS = 1.0
"""A renewal rewrites a run's ``lease.json`` only once the expiry it holds is older
than the renewed one by this much, or a tenth of the lease if less (or later: a
shortened lease is written at once). A file that lags errs early, never late, and a
busy node renews its lease on every assignment: rewriting every run's file each time
was a good share of the cost of starting a run."""


def lease_file_slack(lease_seconds: float) -> float:
    """How far a run's lease file may lag the lease (see LEASE_FILE_SLACK_SECONDS)."""
    return min(LEASE_FILE_SLACK_SECONDS, lease_seconds / 10)


FENCE_TERM_KEY = "fence-term"
"""Store meta key of the highest leader term this node has seen."""

_RUNTIME_NAMES = {
    types_pb2.JOB_RUNTIME_DOCKER: "docker",
    types_pb2.JOB_RUNTIME_PROCESS: "process",
}


@dataclass(frozen=True, slots=True)
class RunAssignment:
    """One run a leader placed on this node."""

    job_id: str
    run_id: str
    attempt: int
    spec: types_pb2.JobSpec
    """Already validated by the leader's side."""
    gpu_indices: tuple[int, ...]
    term: int
    """Fencing token: the leader's term ..."""
    sequence: int
    """... and the assignment's log index."""
    user: str
    lease_seconds: float
    """How long this node's runs may go on without word from a leader (renewed by this
    assignment); 0 or less: the executor's default."""
    sender_term: int = 0
    """The term of the leader that sent it, when a later leader sends again what an
    earlier one assigned: the call is fenced with it (0: with ``term``)."""
    gang: GangPlace | None = None
    """Its place in a gang (a multi-node job), whose torchrun variables it gets;
    None for a single-node run."""

    @property
    def fence_term(self) -> int:
        """The term this call is fenced with: its sender's."""
        return max(self.term, self.sender_term)


class StaleAssignmentError(FailedPreconditionError):
    """A request from a leader whose term is older than the highest this node has seen."""


def _handle_of(run: RunRecord) -> RunHandle:
    return RunHandle(
        run_id=run.id,
        runtime=run.runtime,
        container_id=run.container_id,
        pid=run.pid,
        pid_start_time=run.pid_start_time,
    )


def _write_leases(directories: list[Path], lease: RunLeaseFile) -> None:
    for directory in directories:
        write_lease(directory, lease)


def _time_limit(spec: types_pb2.JobSpec) -> timedelta | None:
    return spec.time_limit.ToTimedelta() if spec.HasField("time_limit") else None


@dataclass
class _ActiveRun:
    """A run that holds resources on this node: from "starting" until its end is recorded."""

    record: RunRecord
    spec: types_pb2.JobSpec
    job: JobRecord
    """The job's mirror row as this run last wrote it."""
    handle: RunHandle | None = None
    gang: GangPlace | None = None
    """Its place in a gang, for its start (an adopted run is started already)."""
    end: tuple[str, str] | None = None
    """(state, reason) the run ends with once a stop was asked for it (cancelled by the
    leader, lost with the lease, failed on its time limit); the first ask wins."""
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)

    def request_stop(self, state: str, reason: str) -> None:
        if self.end is None:
            self.end = (state, reason)
        self.stop_requested.set()


_RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""A run id as a directory name: the leader's are 12 hex digits."""


class RunExecutor:
    """Runs what the leader assigns to this node; see the module docstring."""

    def __init__(
        self,
        *,
        store: Store,
        node_name: str,
        runs_dir: Path,
        runtimes: Mapping[str, Runtime],
        datasets: Callable[[], Mapping[str, Path]],
        stop_grace_seconds: float,
        accounts: AccountPolicy,
        job_path_roots: Collection[Path] = (),
        network_mode: str = "bridge",
        on_event: Callable[[EventRecord], None] = lambda event: None,
        on_run_change: Callable[[RunRecord], None] = lambda run: None,
        on_allocation_change: Callable[[], object] = lambda: None,
        default_lease_seconds: float = 30.0,
        node_gpus: Callable[[], Collection[int]] | None = None,
        replicas: ReplicaEndpoints | None = None,
    ) -> None:
        """
        Args:
            accounts: how job owners map to this node's Unix accounts; every run
                starts as its owner's (:mod:`murmur.node.agent.runtimes.accounts`).
            job_path_roots: where a process run's working dir, virtualenv and conda
                env may be on this node (``job_path_roots``; empty: any absolute
                path). Checked again here, symlinks resolved on this node: the node
                that took the submission checked its own file system, not ours.
            on_event: gets every event written (for live watchers).
            on_run_change: gets a run's record after each of its recorded transitions;
                called synchronously, so it must not block.
            on_allocation_change: called (synchronously) once a run took or gave back
                its GPUs or began or stopped counting as active, so that this node's
                NodeInfo says so at once rather than at its next sample.
            default_lease_seconds: the lease after a (re)start, until a leader renews it.
            node_gpus: the indices of this node's GPUs; an assignment naming another is
                refused. None: not checked.
            replicas: the ports and readiness of service replicas (their runs get a
                ``PORT`` and a readiness probe); None: replicas run without either.
        """
        self._store = store
        self._node = node_name
        self._runs_dir = runs_dir
        self._notices = StopNotices(runs_dir.parent / "notices")
        self._runtimes = dict(runtimes)
        self._datasets = datasets
        self._grace = stop_grace_seconds
        self._accounts = accounts
        self._job_path_roots = tuple(job_path_roots)
        self._network_mode = network_mode
        self._on_event = on_event
        self._on_run_change = on_run_change
        self._on_allocation_change = on_allocation_change
        self._default_lease = default_lease_seconds
        self._node_gpus = node_gpus
        self._replicas = replicas
        self._active: dict[str, _ActiveRun] = {}
        self._highest_term = 0
        self._lease = RunLease(default_lease_seconds)
        self._lease_renewed = asyncio.Event()
        self._published: dict[str, float] = {}
        """Run id → the expiry its ``lease.json`` holds."""
        self._ready = asyncio.Event()
        """Set once recovery is done: requests wait for it."""
        self._lock = asyncio.Lock()
        """Held from a check to its store write: fencing, GPU checks and transitions."""
        self._tasks: asyncio.TaskGroup | None = None

    # ------------------------------------------------------------------ queries

    @property
    def highest_term(self) -> int:
        """The highest leader term this node has seen; older ones are refused."""
        return self._highest_term

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

    def jobs_mounting(self, dataset: str) -> list[str]:
        """The jobs whose runs on this node mount ``dataset`` now (from their start
        until their end is recorded): a dataset is not unregistered under them."""
        return sorted(
            {run.record.job_id for run in self._active.values() if dataset in run.spec.datasets}
        )

    @property
    def active_run_count(self) -> int:
        return len(self._active)

    def files_of(self, run_id: str) -> RunFiles:
        """The run's directory under ``runs_dir``.

        Raises:
            InvalidArgumentError: ``run_id`` is not one path component (the RPC fuzzer's
                NUL made the log reader fail; ``..`` would leave ``runs_dir``).
        """
        if not _RUN_ID_RE.fullmatch(run_id):
            raise InvalidArgumentError(f"{run_id[:64]!r} is not a run id")
        return RunFiles(self._runs_dir / run_id)

    # ----------------------------------------------------------------- commands

    async def start_assigned(self, assignment: RunAssignment) -> RunRecord:
        """Starts the assigned run, or returns the record of the run with its id if this
        node already knows it (a repeated assignment starts nothing).

        Waits until recovery after a start is done. Renews the lease.

        Raises:
            StaleAssignmentError: the term of the leader that sent it is older than the
                highest seen.
            FailedPreconditionError: a GPU it names is held by another run (unless both
                share) or is not on this node.
            InvalidArgumentError: it names a GPU twice, or its run id is not a
                directory name (see `files_of`).
        """
        self.files_of(assignment.run_id)  # refused before anything is recorded
        await self._ready.wait()
        assert self._tasks is not None
        # The caller's deadline (a gRPC deadline, or the leader's own wait on an
        # in-process call) may cancel this call at any await. A start cut short there
        # would leave a run recorded "starting", or holding its GPUs, with no task to
        # start it: stuck for good. So the start runs to its end in a task of its own,
        # whatever becomes of the call that asked for it.
        outcome: asyncio.Future[RunRecord] = asyncio.get_running_loop().create_future()
        # Read the outcome even when nobody waits for it any more.
        outcome.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._tasks.create_task(
            self._start_into(assignment, outcome), name=f"start-{assignment.run_id}"
        )
        return await asyncio.shield(outcome)

    async def _start_into(
        self, assignment: RunAssignment, outcome: asyncio.Future[RunRecord]
    ) -> None:
        """Runs ``_start`` for a caller that may be gone: its refusal goes to the
        caller, never to the task group (which would stop every run's task)."""
        try:
            record = await self._start(assignment)
        except Exception as exc:
            outcome.set_exception(exc)
        except BaseException:
            outcome.cancel()
            raise
        else:
            outcome.set_result(record)

    async def _start(self, assignment: RunAssignment) -> RunRecord:
        async with self._lock:
            await self._fence(assignment.fence_term)
            await self._renew(assignment.lease_seconds)
            known = self._active.get(assignment.run_id)
            if known is not None:
                return known.record
            with suppress(RecordNotFoundError):
                known_record = await self._store.get_run(assignment.run_id)
                if not known_record.is_active:
                    # The leader sends a run again only when it has not heard its end
                    # (it ended long ago, while no leader listened): tell it again.
                    self._on_run_change(known_record)
                return known_record
            self._check_gpus(assignment)
            run = self._new_run(assignment)
            gpus = ",".join(str(index) for index in run.record.gpu_indices) or "none"
            await self._record(
                run, run.record, f"run {run.record.id} starting on {self._node} (GPUs {gpus})"
            )
            self._active[run.record.id] = run
            self._allocation_changed()
            await self._publish_lease((run.record.id,))
            self._spawn(run)
            return run.record

    async def stop_run(self, run_id: str, *, term: int, reason: str, lost: bool = False) -> bool:
        """Asks the run to stop; its end is recorded as cancelled with ``reason`` (lost,
        when ``lost``: the leader gave it up, and its job may run again). Returns False
        when the run is unknown here or has already ended.

        Raises:
            StaleAssignmentError: ``term`` is older than the highest seen.
        """
        await self._ready.wait()
        async with self._lock:
            await self._fence(term)
            run = self._active.get(run_id)
            if run is None:
                return False
            if lost:
                run.request_stop(states.LOST, reason or "lost: given up by the leader")
            else:
                run.request_stop(states.CANCELLED, reason or "cancelled by the leader")
            return True

    def fail_run(self, run_id: str, reason: str) -> None:
        """Stops a run this node judged broken (a service replica whose liveness
        probe kept failing): it ends failed with ``reason``, and its job goes on as a
        failure's would (a replica restarts after its backoff)."""
        run = self._active.get(run_id)
        if run is not None:
            run.request_stop(states.FAILED, reason)

    async def runs_report(self, *, term: int, lease_seconds: float) -> list[RunRecord]:
        """Every active run, then the runs that ended in the last ``RECENT_RUNS_SECONDS``:
        what a leader reconciles its state with. Renews the lease of all runs.

        Raises:
            StaleAssignmentError: ``term`` is older than the highest seen.
        """
        await self._ready.wait()
        async with self._lock:
            await self._fence(term)
            await self._renew(lease_seconds)
            since = datetime.now(UTC) - timedelta(seconds=RECENT_RUNS_SECONDS)
            ended = await self._store.list_runs_ended_since(since)
            return [run.record for run in self._active.values()] + [
                record for record in ended if record.id not in self._active
            ]

    async def _fence(self, term: int) -> None:
        """Refuses an older term; a newer one is stored before anything acts on it."""
        if term < self._highest_term:
            raise StaleAssignmentError(
                f"term {term} is older than term {self._highest_term}, the highest "
                f"{self._node} has seen: a newer leader took over"
            )
        if term > self._highest_term:
            await self._store.set_meta(FENCE_TERM_KEY, str(term))
            self._highest_term = term

    async def _renew(self, lease_seconds: float) -> None:
        self._lease.renew(lease_seconds if lease_seconds > 0 else self._default_lease)
        self._lease_renewed.set()
        expiry = self._lease.wall_clock_expiry()
        stale = [
            run_id
            for run_id in self._active
            if not expiry - lease_file_slack(self._lease.seconds)
            <= self._published.get(run_id, -math.inf)
            <= expiry
        ]
        if stale:
            await self._publish_lease(stale)

    async def _publish_lease(self, run_ids: Iterable[str]) -> None:
        """Writes the lease's wall-clock expiry into the runs' directories, for the
        supervisors that enforce it without the daemon. Callers hold the lock, so an
        older expiry never overwrites a newer one."""
        lease = RunLeaseFile(
            expires_at=self._lease.wall_clock_expiry(),
            lease_seconds=self._lease.seconds,
            grace_seconds=self._grace,
        )
        run_ids = list(run_ids)
        directories = [self.files_of(run_id).directory for run_id in run_ids]
        try:
            await asyncio.to_thread(_write_leases, directories, lease)
        except OSError as exc:
            # The daemon's own watchdog still stops the runs in time while it lives.
            _log.warning("cannot write the runs' lease files: %s", exc)
            for run_id in run_ids:  # written or not: rewrite at the next renewal
                self._published.pop(run_id, None)
            return
        for run_id in run_ids:
            if run_id in self._active:
                self._published[run_id] = lease.expires_at

    def _check_gpus(self, assignment: RunAssignment) -> None:
        """Never double-book a GPU: each one asked for must be here and free, or held
        only by runs that share it with this one."""
        wanted = assignment.gpu_indices
        if len(set(wanted)) != len(wanted):
            raise InvalidArgumentError(f"run {assignment.run_id} names a GPU twice: {wanted}")
        present = None if self._node_gpus is None else set(self._node_gpus())
        for index in wanted:
            if present is not None and index not in present:
                raise FailedPreconditionError(f"GPU {index} is not present on {self._node}")
            for run in self._active.values():
                if index in run.record.gpu_indices and not (
                    assignment.spec.gpus.share and run.spec.gpus.share
                ):
                    raise FailedPreconditionError(f"GPU {index} is held by run {run.record.id}")

    def _new_run(self, assignment: RunAssignment) -> _ActiveRun:
        spec = assignment.spec
        now = datetime.now(UTC)
        record = RunRecord(
            id=assignment.run_id,
            job_id=assignment.job_id,
            attempt=assignment.attempt,
            node=self._node,
            state=states.STARTING,
            gpu_indices=tuple(assignment.gpu_indices),
            container_id="",
            pid=None,
            pid_start_time=None,
            exit_code=None,
            reason="starting",
            term=assignment.term,
            sequence=assignment.sequence,
            created_at=now,
            started_at=None,
            finished_at=None,
            runtime=_RUNTIME_NAMES.get(spec.runtime, "unspecified"),
        )
        job = JobRecord(
            id=assignment.job_id,
            submit_order=0,
            spec=spec.SerializeToString(),
            user=assignment.user,
            queue=spec.queue,
            state=states.STARTING,
            reason="",
            submitted_at=now,
            updated_at=now,
            attempts=assignment.attempt,
            exit_code=None,
            not_before=None,
            cancel_reason="",
            idempotency_key="",
        )
        return _ActiveRun(record=record, spec=spec, job=job, gang=assignment.gang)

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Recovers, then watches the lease until cancelled; owns every run's task.

        Cancelling it leaves the runs going (their supervisors or containers outlive
        the daemon): the next start adopts them.
        """
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            self._highest_term = int(await self._store.get_meta(FENCE_TERM_KEY) or 0)
            await self._recover()
            # From now: adopted runs get this long for a leader to show up.
            await self._renew(self._default_lease)
            self._ready.set()
            await self._watch_lease()

    async def _watch_lease(self) -> None:
        """Stops every run, recording it lost, once the lease has expired."""
        while True:
            self._lease_renewed.clear()
            remaining = self._lease.remaining()
            if remaining > 0:
                # Not wait_for: on 3.11 it can swallow a cancellation that arrives as
                # the event is set (a renewal right before shutdown).
                with suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._lease_renewed.wait()
                continue
            reason = f"{states.LEASE_LAPSED_REASON} for {self._lease.seconds:g} s (lease expired)"
            for run in self._active.values():
                if run.end is None:
                    _log.warning(
                        "stopping run %s: %s", run.record.id, reason,
                        extra={"event": "run.lease_expired", "run": run.record.id},
                    )  # fmt: skip
                run.request_stop(states.LOST, reason)
            await self._lease_renewed.wait()

    def _spawn(self, run: _ActiveRun) -> None:
        assert self._tasks is not None
        self._tasks.create_task(self._lifecycle(run), name=f"run-{run.record.id}")

    def _checked_account(self, run: _ActiveRun) -> RunAccount:
        """The account that runs ``run``, once its paths are within this node's roots.

        Raises:
            RuntimeStartError: a path outside the roots, or no account may run it.
        """
        try:
            check_job_paths(run.spec, self._job_path_roots)
        except InvalidArgumentError as exc:
            raise RuntimeStartError(str(exc)) from None
        return self._accounts.resolve(run.job.user, node=self._node)

    async def _replica_port(self, run: _ActiveRun) -> int | None:
        """A service replica's port (kept in its run's directory); None for other runs."""
        if self._replicas is None or not run.spec.HasField("replica_of"):
            return None
        return await asyncio.to_thread(self._replicas.port_of, run.record.id)

    def _watch_replica(self, run: _ActiveRun, port: int | None) -> None:
        """Probe a service replica's readiness on ``port`` while it runs (a started or
        adopted one)."""
        if self._replicas is not None and port is not None:
            self._replicas.watch(run.record.id, run.record.job_id, run.spec.replica_of, port)

    def _launch_spec(
        self, run: _ActiveRun, account: RunAccount, notices: Path, port: int | None
    ) -> LaunchSpec:
        spec = run.spec
        datasets = self._datasets()
        missing = [name for name in spec.datasets if name not in datasets]
        if missing:
            raise RuntimeStartError(f"dataset {missing[0]} is not on {self._node}")
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
            account=account,
            stop_grace_seconds=self._grace,
            gang=run.gang,
            stop_notice_dir=notices,
            port=port,
            port_name=spec.replica_of.port_name if port is not None else "",
        )

    async def _lifecycle(self, run: _ActiveRun) -> None:
        """Starts (unless adopted), waits, enforces the time limit, records the end."""
        runtime = self._runtimes.get(run.record.runtime)
        try:
            port = await self._replica_port(run)  # read once: for the start, then the probe
            if run.handle is None:
                if runtime is None:
                    raise RuntimeStartError(
                        f"the {run.record.runtime} runtime is not configured on {self._node}"
                    )
                ready, why = await runtime.available()
                if not ready:
                    raise RuntimeStartError(why)
                # File system and NSS (maybe a directory server): not on the event loop.
                account = await asyncio.to_thread(self._checked_account, run)
                notices = await asyncio.to_thread(self._notices.prepare, run.record.id)
                run.handle = await runtime.start(self._launch_spec(run, account, notices, port))
                await self._started(run)
            assert runtime is not None
            self._watch_replica(run, port)
            exit_ = await self._wait(runtime, run)
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
        await asyncio.to_thread(self._notices.remove, run.record.id)
        if self._replicas is not None:
            self._replicas.forget(run.record.id)
        if runtime is not None and run.handle is not None:
            try:
                await runtime.cleanup(run.handle)
            except Exception:
                _log.exception("cleanup of run %s failed", run.record.id)

    async def _wait(self, runtime: Runtime, run: _ActiveRun) -> RunExit:
        assert run.handle is not None
        waiter = asyncio.ensure_future(runtime.wait(run.handle))
        stopper = asyncio.ensure_future(run.stop_requested.wait())
        time_limit = _time_limit(run.spec)
        deadline = None
        if time_limit is not None:
            started = run.record.started_at or datetime.now(UTC)
            deadline = max(0.0, (started + time_limit - datetime.now(UTC)).total_seconds())
        try:
            done, _ = await asyncio.wait(
                {waiter, stopper}, timeout=deadline, return_when=asyncio.FIRST_COMPLETED
            )
            if waiter not in done:
                if stopper not in done:
                    run.request_stop(states.FAILED, f"time limit {time_limit} exceeded; stopped")
                reason = run.end[1] if run.end is not None else "stopped"
                with suppress(OSError):  # a notice is a courtesy; the stop goes on
                    await asyncio.to_thread(
                        self._notices.post, run.record.id, time.time() + self._grace, reason
                    )
                await runtime.stop(run.handle, grace_seconds=self._grace)
            return await waiter
        finally:
            stopper.cancel()
            if not waiter.done():
                waiter.cancel()

    async def _started(self, run: _ActiveRun) -> None:
        assert run.handle is not None
        async with self._lock:
            record = dataclasses.replace(
                run.record, state=states.RUNNING, reason="running",
                started_at=run.record.started_at or datetime.now(UTC),
                container_id=run.handle.container_id, pid=run.handle.pid,
                pid_start_time=run.handle.pid_start_time,
            )  # fmt: skip
            what = f"run {record.id} running on {self._node}" + (
                f" (pid {record.pid})" if record.pid else ""
            )
            await self._record(run, record, what)

    async def _finish(self, run: _ActiveRun, exit_: RunExit) -> None:
        if run.end is not None:
            state, reason = run.end
        elif exit_.exit_code == 0:
            state, reason = states.SUCCEEDED, exit_.reason or "exited with code 0"
        elif exit_.reason.startswith("lost"):
            # Whatever its exit code: a supervisor that stopped it on an expired lease
            # records the signal's.
            state, reason = states.LOST, exit_.reason
        else:
            state, reason = states.FAILED, exit_.reason or f"exited with code {exit_.exit_code}"
        async with self._lock:
            record = dataclasses.replace(
                run.record, state=state, reason=reason, exit_code=exit_.exit_code,
                finished_at=datetime.now(UTC),
            )  # fmt: skip
            await self._record(run, record, f"run {record.id}: {reason}")
            self._active.pop(record.id, None)
            self._published.pop(record.id, None)
            self._allocation_changed()

    async def _record(self, run: _ActiveRun, record: RunRecord, message: str) -> None:
        """Writes the run's new record, its job's mirror and the event in one store
        transaction, then tells the watchers and the leader."""
        newer = any(
            other.record.job_id == record.job_id and other.record.attempt > record.attempt
            for other in self._active.values()
        )
        job = None
        if not newer:  # the mirror follows the job's latest run here
            job = dataclasses.replace(
                run.job, state=record.state, reason=record.reason, exit_code=record.exit_code,
                attempts=record.attempt, updated_at=datetime.now(UTC),
            )  # fmt: skip
        written = await self._store.record_transition(
            job=job,
            runs_changed=(record,),
            event=EventDraft(
                "job.state" if job else "run.state", record.job_id, message,
                job_state=record.state if job else "",
            ),
        )  # fmt: skip
        run.record = record
        if job is not None:
            run.job = job
        if written is not None:
            self._on_event(written)
        try:
            self._on_run_change(record)
        except Exception:
            _log.exception("reporting the change of run %s failed", record.id)

    def _allocation_changed(self) -> None:
        try:
            self._on_allocation_change()
        except Exception:
            _log.exception("telling of a GPU allocation change failed")

    # ----------------------------------------------------------------- recovery

    async def _recover(self) -> None:
        """Adopts runs still alive, records exits that happened while we were down,
        and lets each runtime reap what the store does not know, before any assignment."""
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
            run = _ActiveRun(record=record, spec=spec, job=job, handle=handles[record.id])
            if found is not None and found.exit is None:
                # Alive: adopt it, whatever state we last wrote (a crash right after
                # the runtime started it leaves "starting" in the store).
                _log.info(
                    "adopted run %s", record.id, extra={"event": "run.adopted", "run": record.id}
                )
                run.handle = found.handle
                self._active[record.id] = run
                self._allocation_changed()
                if record.state != states.RUNNING:
                    await self._started(run)
                self._spawn(run)
                continue
            exit_ = (found.exit if found is not None else None) or RunExit(
                None, f"{states.NODE_RESTARTED_REASON} and the run was not found"
            )
            await self._finish(run, exit_)
