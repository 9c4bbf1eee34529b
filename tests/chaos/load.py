"""The submitter: a steady stream of chaos jobs through random nodes.

Every submission has an idempotency key and a job name of its own. An attempt
that fails (the node is dead, cut off, has no leader, or the call timed out)
leaves the outcome unknown: the job may exist or not. The submitter tries
again with the *same* key through another random node, until a node
acknowledges or it gives up; a given-up submission stays unacknowledged, and
the checker looks for it by name at the end.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

import murmur
from murmur.v1 import types_pb2
from tests.chaos import job_program
from tests.chaos.cluster import ChaosCluster
from tests.chaos.history import Submission
from tests.chaos.processes import MARKER_VARIABLE

ATTEMPT_TIMEOUT_SECONDS = 5.0
RETRY_PAUSE_SECONDS = 0.5
GIVE_UP_AFTER_SECONDS = 40.0
JOB_RETRIES = 2


def chaos_job(
    rng: random.Random, *, name: str, results_dir: Path, marker: str
) -> types_pb2.JobSpec:
    """A process job running :mod:`tests.chaos.job_program`: mostly 0.5-3 s, a quarter
    4-16 s (longer than the run lease, and than lease + stop grace: a run that ignores
    SIGTERM then outlives its lease by the whole grace); a few fail, some ignore SIGTERM."""
    seconds = rng.uniform(0.5, 3.0) if rng.random() < 0.75 else rng.uniform(4.0, 16.0)
    mode = rng.choices(["ok", "fail", "stubborn"], [80, 5, 15])[0]
    command = [sys.executable, "-S", job_program.__file__, str(results_dir), f"{seconds:.2f}", mode]
    return types_pb2.JobSpec(
        name=name,
        runtime=types_pb2.JOB_RUNTIME_PROCESS,
        command=command,
        env={MARKER_VARIABLE: marker},
        gpus=types_pb2.GpuRequest(count=rng.choice((0, 1))),
        retries=JOB_RETRIES,
    )


class Submitter:
    def __init__(
        self,
        cluster: ChaosCluster,
        *,
        rng: random.Random,
        session: str,
        results_dir: Path,
        marker: str,
        rate: float,
    ) -> None:
        self._cluster = cluster
        self._rng = rng
        self._session = session
        self._results_dir = results_dir
        self._marker = marker
        self._rate = rate
        self.submissions: list[Submission] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    async def run(self, limit: int) -> None:
        """Submits about ``rate`` jobs a second until :meth:`stop` or ``limit`` jobs."""
        while not self._stop.is_set() and len(self.submissions) < limit:
            number = len(self.submissions) + 1
            submission = Submission(
                key=f"{self._session}-key-{number}",
                name=f"{self._session}-job-{number}",
                submitted_at=time.time(),
            )
            self.submissions.append(submission)
            spec = chaos_job(
                self._rng, name=submission.name, results_dir=self._results_dir,
                marker=self._marker,
            )  # fmt: skip
            task = asyncio.create_task(self._submit(submission, spec))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            pause = self._rng.uniform(0.5, 1.5) / self._rate
            try:
                async with asyncio.timeout(pause):
                    await self._stop.wait()
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stop.set()

    async def drain(self) -> None:
        """Waits for the submissions in flight (each gives up by itself)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _submit(self, submission: Submission, spec: types_pb2.JobSpec) -> None:
        give_up = time.monotonic() + GIVE_UP_AFTER_SECONDS
        while time.monotonic() < give_up:
            name = self._rng.choice(self._cluster.names)
            submission.attempts += 1
            try:
                job = await self._cluster.client(name).submit_job(
                    spec, idempotency_key=submission.key, timeout=ATTEMPT_TIMEOUT_SECONDS
                )
            except murmur.MurmurError as exc:
                submission.errors.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                continue
            submission.job_id = job.id
            submission.acknowledged_at = time.time()
            return

    def acknowledged_between(self, start: float, end: float) -> int:
        return sum(
            1
            for s in self.submissions
            if s.acknowledged_at is not None and start <= s.acknowledged_at < end
        )

    def failed_attempts(self) -> int:
        return sum(len(s.errors) for s in self.submissions)
