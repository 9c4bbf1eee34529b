"""A term owns the tasks started in it (node/control/leader/term.py): ending the
term cancels them and waits for each, a task that fails is logged with its
traceback and counted, and one that ends because the term is over is no failure."""

from __future__ import annotations

import asyncio
import logging

import pytest

from murmur.node.control.consensus.errors import NotLeaderError, ProposalTimeoutError
from murmur.node.control.leader.stats import LeaderStats
from murmur.node.control.leader.term import LeaderTerm
from murmur.node.control.queue import ControlState
from tests.node.control.leader.fakes import TERM, FakeConsensus, let_tasks_run
from tests.node.control.queue.builders import Log


def term_of(stats: LeaderStats) -> LeaderTerm:
    consensus = FakeConsensus(Log(ControlState(), term=TERM))
    return LeaderTerm(TERM, consensus=consensus, stats=stats)  # type: ignore[arg-type]


async def test_ending_a_term_cancels_its_tasks_and_waits_for_each() -> None:
    cleaned: list[str] = []

    async def call_in_flight(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)  # a call that takes a moment to wind down
            cleaned.append(name)

    async with term_of(LeaderStats()) as term:
        started = [term.start(call_in_flight(name), what=name) for name in ("a", "b")]
        await let_tasks_run()
        assert term.running == 2
    assert sorted(cleaned) == ["a", "b"]  # awaited, not only cancelled
    assert term.running == 0
    assert all(task.cancelled() for task in started)
    assert not set(started) & asyncio.all_tasks()


async def test_a_failed_task_is_logged_with_its_traceback_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise KeyError("r1")

    stats = LeaderStats()
    with caplog.at_level(logging.ERROR, logger="murmur.leader"):
        async with term_of(stats) as term:
            term.start(broken(), what="start of run r1")
            await let_tasks_run()
    assert stats.tasks_failed == 1
    (record,) = caplog.records
    assert record.getMessage() == f"start of run r1 failed in term {TERM}"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], KeyError)
    assert (record.event, record.failures) == ("leader.task_failed", 1)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "ending", [NotLeaderError("n2", "deposed"), ProposalTimeoutError("no quorum")]
)
async def test_a_task_ended_by_the_term_ending_is_no_failure(
    ending: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    async def deposed() -> None:
        raise ending

    stats = LeaderStats()
    with caplog.at_level(logging.WARNING, logger="murmur.leader"):
        async with term_of(stats) as term:
            term.start(deposed(), what="reconciliation of n1")
            await let_tasks_run()
    assert stats.tasks_failed == 0
    assert caplog.records == []


async def test_nothing_starts_in_a_term_that_is_over() -> None:
    ran: list[str] = []

    async def late() -> None:
        ran.append("late")

    term = term_of(LeaderStats())
    await term.close()
    with pytest.raises(RuntimeError, match="is over"):
        term.start(late(), what="late")
    await let_tasks_run()
    assert ran == []


async def test_a_loop_alongside_ends_with_the_block_and_its_failure_is_raised() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def broken() -> None:
        raise ValueError("a bug in the loop")

    async def deposed() -> None:
        raise NotLeaderError(None, "deposed")

    async with term_of(LeaderStats()) as term:
        async with term.alongside(forever()) as loop:
            await let_tasks_run()
        assert loop.cancelled()
        with pytest.raises(ValueError, match="a bug in the loop"):
            async with term.alongside(broken()):
                await let_tasks_run()
        async with term.alongside(deposed()):  # the term ending is its owner's to see
            await let_tasks_run()
