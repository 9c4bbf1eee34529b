"""`JobArchive`: the jobs this node's replica of the queue forgot, kept in its store.

The control state forgets ended jobs past the cluster's retention (``ForgetJobs``,
node/control/leader/retention.py), so memory and snapshots stay flat. Applying the command
stays pure: its result carries the forgotten jobs, and every node that applies it
(each voter, each learner) hands them here from the runner's ``on_applied``
(:meth:`ClusterJobs.applied <murmur.node.control.queue.cluster_jobs.ClusterJobs.applied>`). A task
writes them to the ``archived_jobs`` table in batches; until then they are read
from memory, so a job is never missing between the two.

Best effort, and says so: a node that restored a snapshot taken after a
ForgetJobs never applied it and lacks those jobs, and a node killed between the
apply and the write (milliseconds) loses them from its own archive. Any voter
that applied the command has them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Iterable

from murmur.node.control.queue.codec import ControlSnapshotError, job_from_bytes, job_to_bytes
from murmur.node.control.queue.records import ClusterJob
from murmur.storage import ArchivedJobRecord, RecordNotFoundError, Store, StoreError
from murmur.storage.timestamps import from_micros

_log = logging.getLogger("murmur.jobs")

WRITE_BATCH = 1000
RETRY_SECONDS = 1.0


def record_of(job: ClusterJob, archived_at_us: int) -> ArchivedJobRecord:
    return ArchivedJobRecord(
        id=job.id,
        submit_order=job.submit_order,
        user=job.user,
        queue=job.queue,
        state=job.state,
        ended_at=from_micros(job.updated_at_us),
        archived_at=from_micros(archived_at_us),
        data=job_to_bytes(job),
    )


class JobArchive:
    """This node's archive of forgotten jobs: written behind the apply, read by
    ``murmur job show`` and ``job list --all``."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._unwritten: dict[str, tuple[ClusterJob, ArchivedJobRecord]] = {}
        self._wake = asyncio.Event()

    def add(self, jobs: Iterable[ClusterJob]) -> None:
        """Keep ``jobs`` (just forgotten); returns at once, the write follows
        (:meth:`run`)."""
        at_us = time.time_ns() // 1000
        for job in jobs:
            self._unwritten[job.id] = (job, record_of(job, at_us))
        if self._unwritten:
            self._wake.set()

    @property
    def unwritten(self) -> int:
        return len(self._unwritten)

    async def run(self) -> None:
        """Writes what :meth:`add` was given, in batches, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except StoreError as exc:
                _log.warning(
                    "could not archive %d forgotten jobs (retrying): %s",
                    len(self._unwritten),
                    exc,
                    extra={"event": "jobs.archive_failed"},
                )
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()

    async def flush(self) -> None:
        """Write everything given so far.

        Raises:
            StoreError: the store refused; what was not written stays here.
        """
        while self._unwritten:
            batch = list(self._unwritten.values())[:WRITE_BATCH]
            await self._store.archive_jobs([record for _, record in batch])
            for job, record in batch:
                if self._unwritten.get(job.id, (None, None))[1] is record:
                    del self._unwritten[job.id]

    async def job(self, job_id: str) -> ClusterJob | None:
        """The archived job ``job_id``; None if this node has none."""
        unwritten = self._unwritten.get(job_id)
        if unwritten is not None:
            return unwritten[0]
        try:
            record = await self._store.get_archived_job(job_id)
        except RecordNotFoundError:
            return None
        return _decoded(record)

    async def jobs(
        self,
        *,
        after_submit_order: int,
        states: Collection[str],
        user: str | None,
        queue: str | None,
        limit: int,
    ) -> list[ClusterJob]:
        """Up to ``limit`` archived jobs after ``after_submit_order``, in submit
        order, matching every filter given (``states`` empty: any)."""
        records = await self._store.list_archived_jobs(
            after_submit_order=after_submit_order,
            states=states,
            user=user,
            queue=queue,
            limit=limit,
        )
        found = {record.id: job for record in records if (job := _decoded(record)) is not None}
        for job, _ in list(self._unwritten.values()):
            if (
                job.submit_order > after_submit_order
                and (not states or job.state in states)
                and (user is None or job.user == user)
                and (queue is None or job.queue == queue)
            ):
                found[job.id] = job
        return sorted(found.values(), key=lambda job: (job.submit_order, job.id))[:limit]


def _decoded(record: ArchivedJobRecord) -> ClusterJob | None:
    try:
        return job_from_bytes(record.data)
    except ControlSnapshotError as exc:
        _log.warning("archived job %s is unreadable: %s", record.id, exc)
        return None
