"""Property: any sequence of put_run / append_event reads back exactly, also after reopen."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.storage import EventRecord, RunRecord, Store

_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_MOMENTS = st.datetimes(timezones=st.just(UTC))
_TEXT = st.text(max_size=20)

_runs = st.builds(
    RunRecord,
    id=st.sampled_from(["r-1", "r-2", "r-3", "r-4"]),  # few ids, so puts replace
    job_id=st.sampled_from(["job-a", "job-b"]),
    attempt=st.integers(min_value=0, max_value=100),
    node=_TEXT,
    state=st.sampled_from(["pending", "running", "succeeded", "failed", "cancelled", "lost"]),
    gpu_indices=st.lists(st.integers(min_value=0, max_value=15), max_size=8).map(tuple),
    container_id=_TEXT,
    pid=st.none() | st.integers(min_value=1, max_value=2**22),
    pid_start_time=st.none() | _INT64,
    exit_code=st.none() | st.integers(min_value=-255, max_value=255),
    reason=_TEXT,
    term=_INT64,
    sequence=_INT64,
    created_at=_MOMENTS,
    started_at=st.none() | _MOMENTS,
    finished_at=st.none() | _MOMENTS,
)


@dataclass(frozen=True)
class _NewEvent:
    kind: str
    subject: str
    message: str
    job_state: str
    time: datetime


_events = st.builds(
    _NewEvent,
    kind=_TEXT,
    subject=st.sampled_from(["job-a", "job-b", "r-1"]),
    message=_TEXT,
    job_state=_TEXT,
    time=_MOMENTS,
)


@settings(max_examples=40, deadline=None)
@given(operations=st.lists(_runs | _events, max_size=25))
def test_runs_and_events_round_trip(operations: list[RunRecord | _NewEvent]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_check_round_trip(Path(directory) / "store.db", operations))


async def _check_round_trip(path: Path, operations: list[RunRecord | _NewEvent]) -> None:
    expected_runs: dict[str, RunRecord] = {}
    expected_events: list[EventRecord] = []
    async with await Store.open(path) as store:
        for operation in operations:
            if isinstance(operation, RunRecord):
                await store.put_run(operation)
                expected_runs[operation.id] = operation
            else:
                appended = await store.append_event(
                    kind=operation.kind,
                    subject=operation.subject,
                    message=operation.message,
                    job_state=operation.job_state,
                    time=operation.time,
                )
                expected_events.append(
                    EventRecord(
                        id=len(expected_events) + 1,
                        time=operation.time,
                        kind=operation.kind,
                        subject=operation.subject,
                        message=operation.message,
                        job_state=operation.job_state,
                    )
                )
                assert appended == expected_events[-1]
        await _assert_contents(store, expected_runs, expected_events)
    async with await Store.open(path) as reopened:
        await _assert_contents(reopened, expected_runs, expected_events)


async def _assert_contents(
    store: Store, runs: dict[str, RunRecord], events: list[EventRecord]
) -> None:
    by_creation = sorted(runs.values(), key=lambda run: (run.created_at, run.id))
    assert await store.list_runs() == by_creation
    for run in runs.values():
        assert await store.get_run(run.id) == run
    assert await store.list_runs(active_only=True) == [r for r in by_creation if r.is_active]
    assert await store.list_runs(job_id="job-a") == [r for r in by_creation if r.job_id == "job-a"]
    assert await store.list_events() == events
    assert await store.list_events(subject="job-a") == [e for e in events if e.subject == "job-a"]
