"""Forgotten jobs stay readable: each node archives what its replica forgot
(node/control/queue/job_archive.py), and the queue's reads fall back to it
(node/control/queue/cluster_jobs.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from murmur.node.control.leader.retention import JobRetention, forget_interval
from murmur.node.control.queue import AssignJob, ForgetJobs, SubmitJob, decode
from murmur.node.control.queue.cluster_jobs import ClusterJobs
from murmur.node.control.queue.job_archive import JobArchive
from murmur.node.errors import NotFoundError
from murmur.node.jobspec import states
from murmur.storage import Store
from murmur.v1 import cluster_pb2, types_pb2
from tests.node.control.queue.builders import SECOND, Log, end_run, spec


@pytest.fixture
async def archive_store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(tmp_path / "node.sqlite") as store:
        yield store


def ended_jobs(log: Log, count: int, *, first: int = 0) -> list[str]:
    ids = []
    for i in range(first, first + count):
        job_id = f"j{i:03d}"
        log.apply(SubmitJob(job_id, spec(), "alice" if i % 2 else "bob", "", 10 * SECOND))
        placed = log.apply(AssignJob(job_id, "n1", f"r{i}", 1, (), 11 * SECOND))
        assert placed.job is not None
        end_run(log, placed.job, states.SUCCEEDED if i % 3 else states.FAILED, 0, 12 * SECOND)
        ids.append(job_id)
    return ids


class Consensus:
    is_leader = True
    is_voter = True
    name = "n1"

    def state_is_current(self) -> bool:
        return True


def cluster_jobs(log: Log, archive: JobArchive) -> ClusterJobs:
    return ClusterJobs(
        consensus=Consensus(),  # type: ignore[arg-type]
        control=log.state,
        peers=SimpleNamespace(node_stub=lambda address: None),  # type: ignore[arg-type]
        leadership=lambda: None,  # type: ignore[arg-type,return-value]
        waiting=dict,
        archive=archive,
    )


async def test_a_forgotten_job_is_readable_before_and_after_it_is_written(
    archive_store: Store,
) -> None:
    log = Log()
    ended_jobs(log, 3)
    archive = JobArchive(archive_store)
    result = log.apply(ForgetJobs(("j000", "j001"), 0, 20 * SECOND))
    archive.add(result.forgotten)
    # Not written yet, already readable.
    assert archive.unwritten == 2
    assert await archive_store.count_archived_jobs() == 0
    first = await archive.job("j000")
    assert first == result.forgotten[0]
    writer = asyncio.create_task(archive.run())
    try:
        for _ in range(100):
            if not archive.unwritten:
                break
            await asyncio.sleep(0.01)
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    assert await archive_store.count_archived_jobs() == 2
    assert await JobArchive(archive_store).job("j000") == first  # read back from SQLite
    assert await archive.job("j002") is None


async def test_the_queue_reads_fall_back_to_the_archive(archive_store: Store) -> None:
    log = Log()
    ended_jobs(log, 10)
    log.apply(SubmitJob("live", spec(), "alice", "", 30 * SECOND))
    archive = JobArchive(archive_store)
    jobs = cluster_jobs(log, archive)
    forgotten = [f"j{i:03d}" for i in range(0, 10, 2)]
    jobs.applied(log.apply(ForgetJobs(tuple(forgotten), 0, 40 * SECOND)))
    await archive.flush()
    jobs.applied(log.apply(ForgetJobs(("j001",), 0, 40 * SECOND)))  # still unwritten

    shown = await jobs.get("j004")
    assert shown.archived
    assert shown.state == types_pb2.JOB_STATE_SUCCEEDED
    assert shown.runs[-1].node == "n1"
    assert (await jobs.get("j001")).archived
    assert not (await jobs.get("j003")).archived
    with pytest.raises(NotFoundError):
        await jobs.get("nope")

    async def listing(**fields: Any) -> cluster_pb2.ListJobsResponse:
        return await jobs.list(
            cluster_pb2.ListJobsRequest(limit=fields.pop("limit", 100), **fields)
        )

    # Without the archive: only what the queue keeps.
    live = await listing()
    assert [job.id for job in live.jobs] == ["j003", "j005", "j007", "j009", "live"]
    every = await listing(include_archived=True)
    assert [job.id for job in every.jobs] == [f"j{i:03d}" for i in range(10)] + ["live"]
    assert [job.archived for job in every.jobs[:4]] == [True, True, True, False]
    # Pages of 4 walk both, in submit order.
    seen: list[str] = []
    token = ""
    while True:
        page = await listing(include_archived=True, limit=4, page_token=token)
        seen += [job.id for job in page.jobs]
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert seen == [job.id for job in every.jobs]
    failed = await listing(include_archived=True, states=[types_pb2.JOB_STATE_FAILED])
    assert [job.id for job in failed.jobs] == ["j000", "j003", "j006", "j009"]
    bobs = await listing(include_archived=True, user="bob")
    assert [job.id for job in bobs.jobs] == ["j000", "j002", "j004", "j006", "j008"]


class ProposingConsensus(Consensus):
    """Commits at once: applies each proposal to the log's state."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.proposed: list[ForgetJobs] = []

    async def propose(self, data: bytes) -> object:
        command = decode(data)
        assert isinstance(command, ForgetJobs)
        self.proposed.append(command)
        return self.log.apply_bytes(data)


async def test_the_leader_forgets_what_is_due_in_bounded_commands() -> None:
    log = Log()
    ended_jobs(log, 5)  # ended at 12 s
    consensus = ProposingConsensus(log)
    now = 12 * SECOND + 60 * SECOND
    retention = JobRetention(
        consensus=consensus,  # type: ignore[arg-type]
        control=log.state,
        retention_seconds=60,
        clock_us=lambda: now,
    )
    assert await retention.forget_once() == 5
    assert consensus.proposed == [
        ForgetJobs(tuple(f"j{i:03d}" for i in range(5)), 60 * SECOND, now)
    ]
    assert len(log.state) == 0
    assert await retention.forget_once() == 0  # nothing due: nothing proposed
    assert len(consensus.proposed) == 1
    assert forget_interval(1) == 0.5
    assert forget_interval(7 * 86400) == 30
