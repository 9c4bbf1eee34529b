"""What the soak submits and cancels.

Every job runs :mod:`tests.chaos.job_program`, which records its own executions
(start, beats, end) in a per-job file, so a job that runs twice at once is seen
from inside the job. The mix: instant jobs (the run's start and end are all there
is to it), short ones, long ones (minutes in a long soak), jobs that fail on
purpose (with or without retries left), jobs asking for one or two of a node's
GPUs (they queue behind each other), some that ignore SIGTERM (their stop takes
the node's whole stop grace), and, with ``--gangs``, gangs of two nodes (off by
default, so that runs of the soak stay comparable with those before gangs were
placed). A gang's ranks run at once by design and the job program cannot tell
them apart, so a gang only sleeps: the soak checks that it ends in time, not that
a rank never runs twice.

Submissions come in bursts from a pool of client processes (each batch through
its own ``murmur.AsyncClient``, tried again with the same idempotency key through
another node when an attempt fails); cancels target jobs caught pending,
scheduled, starting and running, in turn.
"""

from __future__ import annotations

import asyncio
import enum
import multiprocessing.pool
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import murmur
from murmur.v1 import types_pb2
from tests.chaos import job_program
from tests.chaos.history import Submission
from tests.chaos.processes import MARKER_VARIABLE
from tests.soak.pacing import Pacing
from tests.support.bursts import PlannedSubmission, burst_batches


class JobKind(enum.Enum):
    INSTANT = "instant"
    SHORT = "short"
    LONG = "long"
    FAILING = "failing"
    GPU = "gpu"
    GANG = "gang"


KIND_WEIGHTS = {
    JobKind.INSTANT: 30,
    JobKind.SHORT: 35,
    JobKind.LONG: 10,
    JobKind.FAILING: 10,
    JobKind.GPU: 15,
    JobKind.GANG: 4,
}
"""With the pacing's job lengths and burst sizes, GPU jobs ask for about half of the
cluster's GPU-seconds: they queue during a burst and drain before the next, so the
queue stays bounded however long the soak."""


@dataclass(frozen=True)
class JobPlan:
    """One job as the soak means it: what its program does and what it asks for."""

    name: str
    kind: JobKind
    seconds: float
    """How long one execution of its program runs."""
    mode: str
    """ok | fail | stubborn (see :mod:`tests.chaos.job_program`)."""
    retries: int
    gpus: int
    nodes: int = 1

    def spec(self, results_dir: Path, marker: str) -> types_pb2.JobSpec:
        command = [
            sys.executable, "-S", job_program.__file__, str(results_dir),
            f"{self.seconds:.2f}", self.mode,
        ]  # fmt: skip
        if self.nodes > 1:
            sleep = "import sys, time; time.sleep(float(sys.argv[1]))"
            command = [sys.executable, "-S", "-c", sleep, f"{self.seconds:.2f}"]
        return types_pb2.JobSpec(
            name=self.name,
            runtime=types_pb2.JOB_RUNTIME_PROCESS,
            command=command,
            env={MARKER_VARIABLE: marker},
            gpus=types_pb2.GpuRequest(count=self.gpus),
            retries=self.retries,
            nodes=self.nodes,
            labels={"soak-kind": self.kind.value},
        )


def plan_job(rng: random.Random, name: str, pacing: Pacing, *, gangs: bool = False) -> JobPlan:
    kinds = [kind for kind in KIND_WEIGHTS if gangs or kind is not JobKind.GANG]
    kind = rng.choices(kinds, [KIND_WEIGHTS[kind] for kind in kinds])[0]
    stubborn = rng.random() < 0.15
    if kind is JobKind.INSTANT:
        return JobPlan(name, kind, 0.0, "ok", 0, 0)
    if kind is JobKind.SHORT:
        mode = "stubborn" if stubborn else "ok"
        return JobPlan(name, kind, rng.uniform(0.3, 3.0), mode, rng.choice((0, 1)), 0)
    if kind is JobKind.LONG:
        mode = "stubborn" if stubborn else "ok"
        gpus = 1 if rng.random() < 0.1 else 0
        return JobPlan(name, kind, rng.uniform(*pacing.long_job_seconds), mode, 1, gpus)
    if kind is JobKind.FAILING:
        return JobPlan(name, kind, rng.uniform(0.2, 2.0), "fail", rng.choice((0, 1, 2)), 0)
    if kind is JobKind.GANG:
        return JobPlan(name, kind, rng.uniform(1.0, 5.0), "ok", 1, 0, nodes=2)
    gpus = 2 if rng.random() < 0.3 else 1
    return JobPlan(name, kind, rng.uniform(*pacing.gpu_job_seconds), "ok", 1, gpus)


async def pause_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleeps ``seconds`` or until ``stop``; True when stopped."""
    try:
        async with asyncio.timeout(seconds):
            await stop.wait()
    except TimeoutError:
        return False
    return True


class Bursts:
    """Bursts of submissions from the client processes of ``pool``, one burst at a
    time, a random pause between them."""

    def __init__(
        self,
        *,
        clients: int,
        identity: Path,
        rng: random.Random,
        pacing: Pacing,
        results_dir: Path,
        marker: str,
        session: str,
        gangs: bool = False,
    ) -> None:
        self._clients = clients
        self._gangs = gangs
        self._identity = identity
        self._rng = rng
        self._pacing = pacing
        self._results_dir = results_dir
        self._marker = marker
        self._session = session
        self.plans: dict[str, JobPlan] = {}
        """Every job planned, by name (planned before it is sent)."""
        self.submissions: list[Submission] = []
        """Every submission attempted, once its burst has returned."""
        self.bursts = 0
        self.not_sent = 0
        """Planned but not sent: the load ended before their turn."""

    async def run(
        self,
        pool: multiprocessing.pool.Pool,
        addresses: Sequence[str],
        stop: asyncio.Event,
        load_ends_at: float,
    ) -> None:
        """Bursts through ``pool``'s processes until ``stop``; no submission is sent
        after ``load_ends_at`` (Unix time)."""
        while not await pause_unless(stop, self._rng.uniform(*self._pacing.burst_gap_seconds)):
            if time.time() >= load_ends_at:
                return
            batches = [self._batch() for _ in range(self._clients)]
            outcomes = await asyncio.to_thread(
                burst_batches, pool, addresses, self._identity, batches,
                deadline=load_ends_at,
            )  # fmt: skip
            self.bursts += 1
            for outcome in outcomes:
                if not outcome.attempted:
                    self.not_sent += 1
                    continue
                self.submissions.append(
                    Submission(
                        key=outcome.key,
                        name=outcome.name,
                        submitted_at=outcome.submitted_at,
                        acknowledged_at=outcome.acknowledged_at,
                        job_id=outcome.job_id,
                        attempts=outcome.attempts,
                        errors=outcome.errors,
                    )
                )

    def _batch(self) -> list[PlannedSubmission]:
        batch = []
        for _ in range(self._rng.randint(*self._pacing.per_client)):
            number = len(self.plans) + 1
            name = f"{self._session}-job-{number}"
            plan = plan_job(self._rng, name, self._pacing, gangs=self._gangs)
            self.plans[plan.name] = plan
            spec = plan.spec(self._results_dir, self._marker)
            key = f"{self._session}-key-{number}"
            batch.append(PlannedSubmission(key=key, name=plan.name, spec=spec.SerializeToString()))
        return batch

    def acknowledged(self) -> int:
        return sum(1 for s in self.submissions if s.acknowledged)


CANCEL_TARGETS = (
    types_pb2.JOB_STATE_PENDING,
    types_pb2.JOB_STATE_SCHEDULED,
    types_pb2.JOB_STATE_STARTING,
    types_pb2.JOB_STATE_RUNNING,
)
CANCEL_TRIES = 12
"""Listings per cancel before giving up on its target state (scheduled and starting
last milliseconds: a burst in flight is where they are caught)."""


@dataclass
class CancelRecord:
    job_id: str
    seen: str
    """The state the job was listed in just before the cancel (lowercase)."""
    at: float
    acknowledged: bool
    state_after: str = ""
    """The job's state in the cancel's answer."""
    error: str = ""


@dataclass
class Cancels:
    """Cancels of jobs caught in each non-ended state, in turn."""

    leader_client: Callable[[], murmur.AsyncClient | None]
    rng: random.Random
    pacing: Pacing
    records: list[CancelRecord] = field(default_factory=list)
    missed: Counter[str] = field(default_factory=Counter)
    """Cancels given up because no job was in the target state when listed."""

    async def run(self, stop: asyncio.Event) -> None:
        turn = 0
        while not await pause_unless(stop, self.rng.uniform(*self.pacing.cancel_gap_seconds)):
            target = CANCEL_TARGETS[turn % len(CANCEL_TARGETS)]
            turn += 1
            if not await self._cancel_one(target, stop):
                self.missed[_state_name(target)] += 1

    def acknowledged_at(self) -> dict[str, float]:
        """Job id -> when its (first) cancel was acknowledged."""
        found: dict[str, float] = {}
        for record in self.records:
            if record.acknowledged and record.job_id not in found:
                found[record.job_id] = record.at
        return found

    def by_state(self) -> dict[str, int]:
        counts = Counter(r.seen for r in self.records if r.acknowledged)
        return {_state_name(s): counts[_state_name(s)] for s in CANCEL_TARGETS}

    async def _cancel_one(self, target: types_pb2.JobState.ValueType, stop: asyncio.Event) -> bool:
        done = {record.job_id for record in self.records}
        for _ in range(CANCEL_TRIES):
            client = self.leader_client()
            if client is None or stop.is_set():
                return False
            try:
                jobs = await client.list_jobs(states=[target], limit=50, timeout=5)
            except murmur.MurmurError:
                jobs = []
            candidates = [job for job in jobs if job.id not in done]
            if not candidates:
                await asyncio.sleep(0.25)
                continue
            job = self.rng.choice(candidates)
            record = CancelRecord(
                job_id=job.id, seen=_state_name(target), at=time.time(), acknowledged=False
            )
            self.records.append(record)
            try:
                answer = await client.cancel_job(job.id, reason="soak cancel", timeout=10)
            except murmur.MurmurError as exc:
                record.error = f"{type(exc).__name__}: {exc}"[:300]
                return True
            record.acknowledged = True
            record.at = time.time()
            record.state_after = _state_name(answer.state)
            return True
        return False


def _state_name(state: types_pb2.JobState.ValueType) -> str:
    return types_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()
