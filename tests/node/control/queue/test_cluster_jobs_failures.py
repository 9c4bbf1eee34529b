"""What goes wrong in the queue's face on a node is logged and counted
(node/control/queue/cluster_jobs.py): job counts no leader answered, and a
committed command the control state could not apply."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from murmur.node.control.consensus.leadership import Leadership
from murmur.node.control.queue import ControlState, ErrorKind, SubmitJob
from murmur.node.control.queue.cluster_jobs import ClusterJobs
from tests.node.control.queue.builders import SECOND, Log, spec


class Follower:
    """A node that neither leads nor votes: counts come from the leader."""

    is_leader = False
    is_voter = False
    name = "n2"

    def state_is_current(self) -> bool:
        return False


def cluster_jobs(log: Log, leadership: Callable[[], Leadership]) -> ClusterJobs:
    return ClusterJobs(
        consensus=Follower(),  # type: ignore[arg-type]
        control=log.state,
        peers=SimpleNamespace(node_stub=lambda address: None),  # type: ignore[arg-type]
        leadership=leadership,
        waiting=dict,
    )


def no_leader() -> Leadership:
    return Leadership(leader="", term=3, voters=("n1",), leader_address="")


async def test_counts_no_leader_answered_are_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = cluster_jobs(Log(ControlState()), no_leader)
    with caplog.at_level(logging.INFO, logger="murmur.jobs"):
        assert await jobs.counts() == {}
    assert jobs.stats.counts_unanswered == 1
    (record,) = caplog.records
    assert record.getMessage().startswith("job counts unanswered: no leader is known yet")
    assert record.failures == 1  # type: ignore[attr-defined]


async def test_counts_that_fail_on_a_bug_are_logged_with_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> Leadership:
        raise AttributeError("a bug in the leadership look-up")

    jobs = cluster_jobs(Log(ControlState()), broken)
    with caplog.at_level(logging.INFO, logger="murmur.jobs"):
        assert await jobs.counts() == {}
    assert jobs.stats.counts_unanswered == 1
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], AttributeError)


async def test_a_command_the_state_could_not_apply_is_logged_with_the_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> None:
        raise IndexError("a bug in the submit rule")

    log = Log(ControlState())
    monkeypatch.setattr(log.state, "_submit", broken)
    result = log.apply(SubmitJob("j1", spec(), "alice", "", SECOND))
    assert (result.ok, result.error) == (False, ErrorKind.INTERNAL)  # the voter goes on
    jobs = cluster_jobs(log, no_leader)
    with caplog.at_level(logging.ERROR, logger="murmur.jobs"):
        jobs.applied(result)
    assert jobs.stats.apply_failures == 1
    (record,) = caplog.records
    assert "entry 1 could not be applied" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], IndexError)
    assert (record.event, record.failures) == ("jobs.apply_failed", 1)  # type: ignore[attr-defined]
