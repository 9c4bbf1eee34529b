"""`AuditTrail` without a network: the outbox keeps what the log did not take, ships it
when the log takes commands again (once, also across a restart), and the chain each
node stores verifies against its control state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from murmur.node.control.queue import audit_trail as trail_module
from murmur.node.control.queue.audit_trail import AuditTrail
from murmur.node.control.queue.commands import Command
from murmur.node.control.queue.state import ControlState
from murmur.node.errors import UnavailableError
from murmur.storage import AuditEntry, Store
from tests.node.control.queue.builders import Log


class FlakyLog:
    """Commits through a Log when up; refuses (no quorum) while down."""

    def __init__(self, log: Log, on_applied: Callable[[object], None]) -> None:
        self.log = log
        self.on_applied = on_applied
        self.up = True
        self.commands: list[Command] = []

    async def commit(self, command: Command) -> None:
        if not self.up:
            raise UnavailableError("no leader could answer")
        self.commands.append(command)
        self.on_applied(self.log.apply(command))


def entry(user: str, result: str = "OK") -> AuditEntry:
    return AuditEntry(datetime.now(UTC), user, "member", "SubmitJob", "job-1", result, "")


@contextlib.asynccontextmanager
async def running(store: Store, log: Log) -> AsyncIterator[tuple[AuditTrail, FlakyLog]]:
    trail: AuditTrail
    flaky = FlakyLog(log, lambda result: trail.applied(result))
    trail = AuditTrail(
        store=store,
        node_name="node-2",
        control=log.state,
        consensus=Any,  # type: ignore[arg-type]  # reads only
        peers=Any,  # type: ignore[arg-type]
        leadership=Any,  # type: ignore[arg-type]
        commit=flaky.commit,
    )
    task = asyncio.create_task(trail.run())
    try:
        yield trail, flaky
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await trail.flush()


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trail_module, "SHIP_WAIT_SECONDS", 0.2)
    monkeypatch.setattr(trail_module, "RETRY_SECONDS", 0.02)
    monkeypatch.setattr(trail_module, "POLL_SECONDS", 0.05)


async def test_a_call_waits_for_its_record_to_be_in_the_log(tmp_path: Path) -> None:
    log = Log()
    async with (
        await Store.open(tmp_path / "murmur.db") as store,
        running(store, log) as (
            trail,
            flaky,
        ),
    ):
        await trail.record(entry("max"))
        assert log.state.audit_head()[0] == 1  # committed before record() returned
        assert trail.stats.waits_expired == 0
        report = await trail.verify_here()
        assert report.intact, report
        assert (report.entries, report.log_count, report.node) == (1, 1, "node-2")
        assert flaky.commands


async def test_without_a_quorum_records_wait_in_the_outbox_and_ship_later(
    tmp_path: Path,
) -> None:
    log = Log()
    async with await Store.open(tmp_path / "murmur.db") as store:
        async with running(store, log) as (trail, flaky):
            flaky.up = False
            await trail.record(entry("vera", "PERMISSION_DENIED"))  # answers after the wait
            await trail.record(entry("max"))
            assert trail.stats.waits_expired == 2
            assert trail.stats.ship_failures >= 1
            assert log.state.audit_head()[0] == 0
            assert [r.user for r in await store.list_audit()] == ["max", "vera"]
            flaky.up = True
            await wait_for(lambda: log.state.audit_head()[0] == 2)
        stored = await store.audit_chain_after(0)
        assert [(r.user, r.result, r.node) for r in stored] == [
            ("vera", "PERMISSION_DENIED", "node-2"),
            ("max", "OK", "node-2"),
        ]
        # A restart (same store, a state the log rebuilt) ships nothing twice.
        async with running(store, log) as (trail, flaky):
            await trail.record(entry("ada"))
            assert log.state.audit_head()[0] == 3
            assert (await trail.verify_here()).intact


async def test_a_restart_that_lost_its_cursor_ships_nothing_twice(tmp_path: Path) -> None:
    log = Log()
    async with await Store.open(tmp_path / "murmur.db") as store:
        async with running(store, log) as (trail, _):
            await trail.record(entry("max"))
        await store.set_meta(trail_module.SHIPPED_KEY, "0")  # the cursor was not saved
        restarted = Log(ControlState.from_snapshot(log.state.snapshot()))
        restarted.index = log.index
        async with running(store, restarted) as (trail, flaky):
            await trail.ship_pending()
            await asyncio.sleep(0.1)
            assert flaky.commands == []  # the log knows this origin's last id
            assert restarted.state.audit_head() == log.state.audit_head()
            report = await trail.verify_here()
            assert report.intact, report
