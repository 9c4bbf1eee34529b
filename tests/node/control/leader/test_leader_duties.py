"""The duties across terms (node/control/leader/duties.py): a term that ends, or a
node that stops, ends every task the term started and waits for it; duties that
fail are logged, counted and start over; a cancel is delivered at once while
leading, and left to the next term's reconciliation between terms."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest

from murmur.node.control.leader import duties as duties_module
from murmur.node.control.queue import CancelJob, ControlState, ReportRun
from murmur.node.jobspec import states
from murmur.v1 import types_pb2
from tests.node.control.leader.fakes import TERM, FakeView, Leader, leader_over, placed
from tests.node.control.queue.builders import SECOND, Log


async def until(condition: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def term_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("term ")]


@contextlib.asynccontextmanager
async def leading(leader: Leader) -> AsyncIterator[asyncio.Task[None]]:
    running = asyncio.create_task(leader.duties.run())
    try:
        yield running
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


def with_a_start_under_way(log: Log) -> Leader:
    """A leader whose first reconciliation sends j1's run to n1, which takes its time."""
    placed(log, "j1")
    leader = leader_over(log)
    leader.peers.start_gate = asyncio.Event()  # never set
    return leader


async def test_a_term_that_ends_cancels_and_awaits_its_tasks() -> None:
    leader = with_a_start_under_way(Log(ControlState(), term=TERM))
    async with leading(leader):
        await until(lambda: "StartRun" in [kind for kind, _ in leader.peers.calls])
        assert len(term_tasks()) >= 2  # the start under way, and the renewal loop
        leader.consensus.depose()
        await until(lambda: leader.peers.cancelled == ["r1"])
        await until(lambda: term_tasks() == [])
        assert leader.duties.waiting() == {}


async def test_a_stopping_node_waits_for_the_terms_tasks_to_end() -> None:
    leader = with_a_start_under_way(Log(ControlState(), term=TERM))
    running = asyncio.create_task(leader.duties.run())
    await until(lambda: "StartRun" in [kind for kind, _ in leader.peers.calls])
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    # Not a moment later: the call had ended when the duties returned.
    assert leader.peers.cancelled == ["r1"]
    assert term_tasks() == []


class BrokenOnceView(FakeView):
    def __init__(self) -> None:
        self.broken = True

    def nodes(self) -> list[types_pb2.NodeInfo]:
        if self.broken:
            self.broken = False
            raise RuntimeError("a bug in the view")
        return super().nodes()


async def test_failed_duties_are_logged_counted_and_start_over(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duties_module, "FAILED_TERM_PAUSE_SECONDS", 0.01)
    leader = leader_over(Log(ControlState(), term=TERM), view=BrokenOnceView())
    with caplog.at_level(logging.ERROR, logger="murmur.leader"):
        async with leading(leader):
            await until(lambda: leader.duties.stats.terms_led == 2)
    assert leader.duties.stats.terms_failed == 1
    (record,) = caplog.records
    assert record.getMessage() == f"leader duties failed in term {TERM}; starting over"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert record.failures == 1  # type: ignore[attr-defined]


async def test_a_cancel_is_delivered_at_once_while_leading() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")
    assert log.apply(ReportRun("j1", "r1", "n1", states.RUNNING, None, "running", 3 * SECOND)).ok
    leader = leader_over(log)
    async with leading(leader):
        await until(lambda: ("ListRuns", "n1:1") in leader.peers.calls)
        await until(lambda: leader.duties.stats.terms_led == 1)
        result = log.apply(CancelJob("j1", "alice", False, "not needed", 4 * SECOND))
        leader.duties.applied(result)
        await until(lambda: "StopRun" in [kind for kind, _ in leader.peers.calls])
    stops = [request for kind, request in leader.peers.calls if kind == "StopRun"]
    assert [stop.run_id for stop in stops] == ["r1"]  # type: ignore[attr-defined]


async def test_between_terms_a_cancel_is_left_to_the_next_reconciliation() -> None:
    log = Log(ControlState(), term=TERM)
    placed(log, "j1")
    assert log.apply(ReportRun("j1", "r1", "n1", states.RUNNING, None, "running", 3 * SECOND)).ok
    leader = leader_over(log)
    result = log.apply(CancelJob("j1", "alice", False, "not needed", 4 * SECOND))
    leader.duties.applied(result)  # leads, but its duties have not begun
    await asyncio.sleep(0.01)
    assert leader.peers.calls == []
    assert term_tasks() == []
