"""The jobs table, the node's mirror of the jobs it ran: upserted with queue order,
written together with runs and events in one transaction."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from murmur.storage import EventDraft, JobRecord, RecordNotFoundError, RunRecord, Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def job(job_id: str, *, user: str = "ada", state: str = "starting") -> JobRecord:
    return JobRecord(
        id=job_id, submit_order=0, spec=b"\x0a\x01x", user=user, queue="default", state=state,
        reason="placed", submitted_at=NOW, updated_at=NOW, attempts=1, exit_code=None,
        not_before=None, cancel_reason="", idempotency_key="",
    )  # fmt: skip


def run(run_id: str, job_id: str, state: str = "running") -> RunRecord:
    return RunRecord(
        id=run_id, job_id=job_id, attempt=1, node="n1", state=state, gpu_indices=(0, 1),
        container_id="", pid=10, pid_start_time=99, exit_code=None, reason="", term=3,
        sequence=17, created_at=NOW, started_at=NOW, finished_at=None, runtime="process",
    )  # fmt: skip


async def test_the_first_write_of_a_job_gives_it_the_next_submit_order(store: Store) -> None:
    for index in range(3):
        await store.record_transition(job=job(f"j{index}"))
    assert [(await store.get_job(f"j{i}")).submit_order for i in range(3)] == [1, 2, 3]


async def test_a_later_write_updates_the_job_and_keeps_its_order(store: Store) -> None:
    await store.record_transition(job=job("j1"))
    await store.record_transition(job=job("j2"))
    retried = dataclasses.replace(job("j1"), state="running", attempts=2, reason="again")
    await store.record_transition(job=retried)
    stored = await store.get_job("j1")
    assert (stored.submit_order, stored.state, stored.attempts) == (1, "running", 2)


async def test_a_transition_writes_job_runs_and_event_together(store: Store) -> None:
    event = await store.record_transition(
        job=job("j1", state="running"), runs_changed=(run("r1", "j1"),),
        event=EventDraft("job.state", "j1", "running on n1", job_state="running"),
    )  # fmt: skip
    assert event is not None
    assert (await store.get_job("j1")).state == "running"
    stored_run = await store.get_run("r1")
    assert (stored_run.runtime, stored_run.term, stored_run.sequence) == ("process", 3, 17)
    assert [e.kind for e in await store.list_events(subject="j1")] == ["job.state"]


async def test_an_unknown_job_is_not_found(store: Store) -> None:
    with pytest.raises(RecordNotFoundError):
        await store.get_job("nope")
