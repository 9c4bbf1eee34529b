"""Round trips and filters for every table, through the Store facade."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from murmur.storage import (
    TERMINAL_RUN_STATES,
    AuditEntry,
    DatasetExistsError,
    DatasetRecord,
    RecordNotFoundError,
    RunRecord,
    Store,
)

_T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _run(run_id: str, **changes: object) -> RunRecord:
    record = RunRecord(
        id=run_id,
        job_id="job-1",
        attempt=1,
        node="gpu-01",
        state="running",
        gpu_indices=(0, 3),
        container_id="c0ffee",
        pid=4242,
        pid_start_time=987654,
        exit_code=None,
        reason="",
        term=3,
        sequence=17,
        created_at=_T0,
        started_at=_T0 + timedelta(seconds=2),
        finished_at=None,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def _dataset(name: str) -> DatasetRecord:
    return DatasetRecord(
        name=name,
        path=Path("/data") / name,
        size_bytes=123_456_789_012,
        file_count=1_281_167,
        manifest_sha256="5e" * 32,
        added_at=_T0,
        added_by="ada",
    )


def _audit(user: str, action: str, minute: int) -> AuditEntry:
    return AuditEntry(
        time=_T0 + timedelta(minutes=minute),
        user=user,
        role="member",
        action=action,
        target="job-1",
        result="ok",
        detail="",
    )


async def test_meta_round_trip_and_overwrite(store: Store) -> None:
    assert await store.get_meta("node_id") is None
    await store.set_meta("node_id", "n-1")
    await store.set_meta("node_id", "n-2")
    assert await store.get_meta("node_id") == "n-2"


async def test_dataset_round_trip(store: Store) -> None:
    record = _dataset("imagenet")
    await store.add_dataset(record)
    assert await store.get_dataset("imagenet") == record


async def test_dataset_name_taken_is_refused(store: Store) -> None:
    await store.add_dataset(_dataset("imagenet"))
    with pytest.raises(DatasetExistsError, match="imagenet"):
        await store.add_dataset(dataclasses.replace(_dataset("imagenet"), size_bytes=1))
    assert (await store.get_dataset("imagenet")).size_bytes == 123_456_789_012


async def test_missing_dataset_raises_not_found(store: Store) -> None:
    with pytest.raises(RecordNotFoundError, match="dataset 'nope'"):
        await store.get_dataset("nope")


async def test_datasets_are_listed_by_name(store: Store) -> None:
    for name in ("wiki", "c4", "imagenet"):
        await store.add_dataset(_dataset(name))
    assert [d.name for d in await store.list_datasets()] == ["c4", "imagenet", "wiki"]


async def test_run_round_trip_including_nulls(store: Store) -> None:
    running = _run("r-1")
    pending = _run(
        "r-2",
        state="pending",
        gpu_indices=(),
        container_id="",
        pid=None,
        pid_start_time=None,
        started_at=None,
    )
    await store.put_run(running)
    await store.put_run(pending)
    assert await store.get_run("r-1") == running
    assert await store.get_run("r-2") == pending


async def test_put_run_replaces_the_stored_run(store: Store) -> None:
    await store.put_run(_run("r-1"))
    finished = _run(
        "r-1", state="failed", exit_code=137, reason="killed", finished_at=_T0 + timedelta(hours=1)
    )
    await store.put_run(finished)
    assert await store.get_run("r-1") == finished
    assert await store.list_runs() == [finished]


async def test_missing_run_raises_not_found(store: Store) -> None:
    with pytest.raises(RecordNotFoundError, match="run 'r-404'"):
        await store.get_run("r-404")


async def test_list_runs_filters_by_job_and_activity(store: Store) -> None:
    states = ["pending", "scheduled", "starting", "running", *sorted(TERMINAL_RUN_STATES)]
    for index, state in enumerate(states):
        job_id = "job-a" if index % 2 == 0 else "job-b"
        created = _T0 + timedelta(seconds=index)
        await store.put_run(_run(f"r-{index}", job_id=job_id, state=state, created_at=created))

    everything = await store.list_runs()
    assert [r.state for r in everything] == states  # creation order
    active = await store.list_runs(active_only=True)
    assert [r.state for r in active] == ["pending", "scheduled", "starting", "running"]
    assert all(r.is_active for r in active)
    job_a = await store.list_runs(job_id="job-a")
    assert {r.job_id for r in job_a} == {"job-a"}
    assert len(job_a) == (len(states) + 1) // 2
    active_a = await store.list_runs(job_id="job-a", active_only=True)
    assert [r.state for r in active_a] == ["pending", "starting"]
    assert await store.list_runs(job_id="job-none") == []


async def test_append_event_returns_what_reads_back(store: Store) -> None:
    first = await store.append_event(kind="job", subject="job-1", message="submitted", time=_T0)
    second = await store.append_event(
        kind="job", subject="job-1", message="scheduled on gpu-01", job_state="scheduled"
    )
    assert second.id == first.id + 1
    assert second.time.tzinfo is UTC
    assert await store.list_events() == [first, second]
    assert first.job_state == ""


async def test_event_time_in_another_zone_is_stored_as_the_same_instant(store: Store) -> None:
    paris = datetime(2025, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    event = await store.append_event(kind="k", subject="s", message="m", time=paris)
    assert event.time == paris
    assert event.time.tzinfo is UTC
    assert event.time.hour == 12


async def test_naive_event_time_is_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        await store.append_event(kind="k", subject="s", message="m", time=datetime(2025, 1, 1))
    assert await store.list_events() == []


async def test_list_events_since_id_subject_and_limit(store: Store) -> None:
    appended = [
        await store.append_event(kind="job", subject=f"job-{i % 3}", message=f"m{i}", time=_T0)
        for i in range(10)
    ]
    assert await store.list_events(since_id=appended[6].id) == appended[7:]
    assert await store.list_events(subject="job-1") == [appended[i] for i in (1, 4, 7)]
    assert await store.list_events(subject="job-1", since_id=appended[4].id) == [appended[7]]
    assert await store.list_events(limit=3) == appended[:3]
    with pytest.raises(ValueError, match="limit"):
        await store.list_events(limit=0)


async def test_audit_round_trip(store: Store) -> None:
    entry = _audit("ada", "job.submit", 0)
    record = await store.append_audit(entry)
    assert record.id == 1
    assert (record.time, record.user, record.action) == (entry.time, "ada", "job.submit")
    assert await store.list_audit() == [record]


async def test_audit_pages_newest_first(store: Store) -> None:
    records = [await store.append_audit(_audit("ada", f"a{i}", i)) for i in range(7)]
    newest_first = list(reversed(records))

    pages = []
    before_id: int | None = None
    while page := await store.list_audit(limit=3, before_id=before_id):
        pages.append(page)
        before_id = page[-1].id
    assert pages == [newest_first[0:3], newest_first[3:6], newest_first[6:7]]


async def test_audit_filters_by_user(store: Store) -> None:
    for i in range(6):
        await store.append_audit(_audit("ada" if i % 2 else "bob", f"a{i}", i))
    bob = await store.list_audit(user="bob")
    assert [r.action for r in bob] == ["a4", "a2", "a0"]
    older_bob = await store.list_audit(user="bob", before_id=bob[0].id, limit=1)
    assert [r.action for r in older_bob] == ["a2"]
    with pytest.raises(ValueError, match="limit"):
        await store.list_audit(limit=0)
