"""The jobs table: insert with queue order, idempotent submission, atomic transitions."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

from storage import EventDraft, JobRecord, RunRecord, Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def job(job_id: str, *, user: str = "ada", key: str = "", queue: str = "default") -> JobRecord:
    return JobRecord(
        id=job_id, submit_order=0, spec=b"\x0a\x01x", user=user, queue=queue, state="pending",
        reason="queued", submitted_at=NOW, updated_at=NOW, attempts=0, exit_code=None,
        not_before=None, cancel_reason="", idempotency_key=key,
    )  # fmt: skip


def run(run_id: str, job_id: str, state: str = "running") -> RunRecord:
    return RunRecord(
        id=run_id, job_id=job_id, attempt=1, node="n1", state=state, gpu_indices=(0, 1),
        container_id="", pid=10, pid_start_time=99, exit_code=None, reason="", term=0,
        sequence=0, created_at=NOW, started_at=NOW, finished_at=None, runtime="process",
    )  # fmt: skip


async def test_submit_order_grows_and_listing_pages_by_it(store: Store) -> None:
    stored = [(await store.insert_job(job(f"j{i}")))[0] for i in range(5)]
    assert [j.submit_order for j in stored] == [1, 2, 3, 4, 5]
    first = await store.list_jobs(limit=2)
    rest = await store.list_jobs(after_order=first[-1].submit_order)
    assert [j.id for j in first + rest] == ["j0", "j1", "j2", "j3", "j4"]
    assert await store.get_job("j3") == stored[3]


async def test_the_same_idempotency_key_returns_the_first_job(store: Store) -> None:
    results = await asyncio.gather(*(store.insert_job(job(f"try{i}", key="k1")) for i in range(8)))
    assert len({r.id for r, _ in results}) == 1
    assert len(await store.list_jobs()) == 1
    other_user, _ = await store.insert_job(job("bob-job", user="bob", key="k1"))
    assert other_user.id == "bob-job"


async def test_a_transition_writes_job_runs_and_event_together(store: Store) -> None:
    stored, first = await store.insert_job(
        job("j1"), event=EventDraft("job.submitted", "j1", "queued")
    )
    assert first is not None
    running = dataclasses.replace(stored, state="running", reason="started", attempts=1)
    event = await store.record_transition(
        job=running, runs_changed=(run("r1", "j1"),),
        event=EventDraft("job.state", "j1", "running on n1", job_state="running"),
    )  # fmt: skip
    assert event is not None
    assert (await store.get_job("j1")).state == "running"
    assert (await store.get_run("r1")).runtime == "process"
    kinds = [e.kind for e in await store.list_events(subject="j1")]
    assert kinds == ["job.submitted", "job.state"]
    assert await store.count_jobs_by_state() == {"running": 1}


async def test_filters_by_state_user_and_queue(store: Store) -> None:
    await store.insert_job(job("a", user="ada"))
    await store.insert_job(job("b", user="bob", queue="big"))
    assert [j.id for j in await store.list_jobs(user="bob")] == ["b"]
    assert [j.id for j in await store.list_jobs(queue="big")] == ["b"]
    assert [j.id for j in await store.list_jobs(states=("pending",))] == ["a", "b"]
    assert await store.list_jobs(states=("running",)) == []
