"""Bursts of submissions from many client processes, as a lab's scripts make them:
each process has its own ``murmur.AsyncClient`` (its own mTLS channel) and submits
its jobs one after another, all processes at once."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.pool
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import murmur
from murmur.v1 import types_pb2

ENDED = frozenset(
    {
        types_pb2.JOB_STATE_SUCCEEDED,
        types_pb2.JOB_STATE_FAILED,
        types_pb2.JOB_STATE_CANCELLED,
        types_pb2.JOB_STATE_LOST,
    }
)


def true_job(name: str) -> types_pb2.JobSpec:
    """The shortest process job there is: the run's start and end are all there is to it."""
    return types_pb2.JobSpec(name=name, runtime=types_pb2.JOB_RUNTIME_PROCESS, command=["true"])


def _submit_all(address: str, identity: str, prefix: str, count: int) -> list[str]:
    async def submit() -> list[str]:
        config = murmur.resolve_connect_config(node=address, identity=identity)
        async with murmur.AsyncClient(config) as client:
            return [
                (await client.submit_job(true_job(f"{prefix}-{i}"), timeout=30)).id
                for i in range(count)
            ]

    return asyncio.run(submit())


def burst(
    addresses: Sequence[str], identity: Path, *, clients: int = 8, per_client: int = 125
) -> list[str]:
    """``clients`` processes submit ``per_client`` jobs each, client ``i`` through
    ``addresses[i % len(addresses)]``; returns every acknowledged job id."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with gRPC threads
    with context.Pool(clients) as pool:
        batches = pool.starmap(
            _submit_all,
            [
                (addresses[i % len(addresses)], str(identity), f"c{i}", per_client)
                for i in range(clients)
            ],
        )
    return [job_id for batch in batches for job_id in batch]


@dataclass(frozen=True)
class PlannedSubmission:
    """One job a client process is to submit: its idempotency key, its name and its
    spec (serialized, so it crosses the process boundary as bytes)."""

    key: str
    name: str
    spec: bytes


@dataclass
class SubmissionOutcome:
    """What became of a :class:`PlannedSubmission` in its client process."""

    key: str
    name: str
    attempted: bool = False
    """False when the batch's deadline passed before its turn came: never sent."""
    submitted_at: float = 0.0
    acknowledged_at: float | None = None
    job_id: str = ""
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


def submit_batch(
    addresses: Sequence[str],
    identity: str,
    first: int,
    batch: Sequence[PlannedSubmission],
    deadline: float,
    attempt_timeout: float = 5.0,
    give_up_after: float = 30.0,
) -> list[SubmissionOutcome]:
    """Runs in a client process: submits ``batch`` one job after another, starting
    with ``addresses[first]``. A failed attempt (dead node, no leader, timeout) is
    tried again with the same idempotency key through the next address, until one
    acknowledges or ``give_up_after`` seconds pass; no submission starts after
    ``deadline`` (Unix time)."""

    async def submit_all() -> list[SubmissionOutcome]:
        clients: dict[str, murmur.AsyncClient] = {}
        outcomes = [SubmissionOutcome(key=p.key, name=p.name) for p in batch]
        turn = first
        try:
            for planned, outcome in zip(batch, outcomes, strict=True):
                if time.time() >= deadline:
                    break
                spec = types_pb2.JobSpec.FromString(planned.spec)
                outcome.attempted = True
                outcome.submitted_at = time.time()
                give_up = time.monotonic() + give_up_after
                while time.monotonic() < give_up:
                    address = addresses[turn % len(addresses)]
                    if address not in clients:
                        config = murmur.resolve_connect_config(node=address, identity=identity)
                        clients[address] = murmur.AsyncClient(config)
                    outcome.attempts += 1
                    try:
                        job = await clients[address].submit_job(
                            spec, idempotency_key=planned.key, timeout=attempt_timeout
                        )
                    except murmur.MurmurError as exc:
                        outcome.errors.append(f"{address}: {type(exc).__name__}: {exc}"[:300])
                        turn += 1
                        await asyncio.sleep(0.3)
                        continue
                    outcome.job_id = job.id
                    outcome.acknowledged_at = time.time()
                    break
        finally:
            for client in clients.values():
                await client.close()
        return outcomes

    return asyncio.run(submit_all())


def spawn_pool(clients: int) -> multiprocessing.pool.Pool:
    """A pool of ``clients`` client processes, started by spawn (never fork a process
    with gRPC threads); reuse it for many bursts and close it after."""
    return multiprocessing.get_context("spawn").Pool(clients)


def burst_batches(
    pool: multiprocessing.pool.Pool,
    addresses: Sequence[str],
    identity: Path,
    batches: Sequence[Sequence[PlannedSubmission]],
    *,
    deadline: float,
) -> list[SubmissionOutcome]:
    """One burst: batch ``i`` is submitted by a process of ``pool`` through
    ``addresses[i % len(addresses)]`` first, all batches at once (see
    :func:`submit_batch`); returns every outcome, acknowledged or not."""
    results = pool.starmap(
        submit_batch,
        [
            (list(addresses), str(identity), index % len(addresses), list(batch), deadline)
            for index, batch in enumerate(batches)
        ],
    )
    return [outcome for batch in results for outcome in batch]


async def wait_ended(
    client: murmur.AsyncClient, job_ids: Iterable[str], *, within: float
) -> dict[str, types_pb2.Job]:
    """Every job, once all have ended; raises AssertionError naming those that did not
    end ``within`` seconds (with their state and reason)."""
    wanted = set(job_ids)
    deadline = time.monotonic() + within
    while True:
        jobs = {job.id: job for job in await client.list_jobs(timeout=30) if job.id in wanted}
        open_jobs = [job for job in jobs.values() if job.state not in ENDED]
        missing = wanted - set(jobs)
        if not open_jobs and not missing:
            return jobs
        if time.monotonic() > deadline:
            stuck = ", ".join(
                f"{job.id} {types_pb2.JobState.Name(job.state)} ({job.reason})"
                for job in open_jobs[:10]
            )
            raise AssertionError(
                f"{len(open_jobs)} jobs never ended, {len(missing)} missing: {stuck}"
            )
        await asyncio.sleep(0.5)
