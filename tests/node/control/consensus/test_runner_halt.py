"""Fail-stop (node/control/consensus/runner.py): a node that meets an entry only a
newer version knows stops applying the log there rather than skip it, and stops
leading; started again on a version that knows the entry, it applies the log from
where it stopped. One node, bootstrapped alone, on a real store, with the real
control state at an older protocol level (what ``simulate_protocol_level`` runs)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from murmur.node.control.consensus.errors import NotLeaderError
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.queue import ControlState
from murmur.node.control.queue.commands import SetClusterLevel, SubmitJob, encode
from murmur.node.control.queue.results import ApplyResult
from murmur.node.control.raft import ElectionConfig
from murmur.node.membership.transport import SendOutcome
from murmur.storage import Store
from murmur.v1 import types_pb2

SECOND = 1_000_000


class NoPeers:
    async def call(
        self, address: str, invoke: Callable[[object], Awaitable[object]]
    ) -> SendOutcome:
        return SendOutcome.REFUSED


def job(job_id: str, project: str = "") -> bytes:
    spec = types_pb2.JobSpec(
        name=job_id, runtime=types_pb2.JOB_RUNTIME_PROCESS, command=["true"], project=project
    )
    return encode(SubmitJob(job_id, spec, "alice", "", SECOND))


@asynccontextmanager
async def running(
    store: Store, state: ControlState, *, snapshot_every: int = 10_000
) -> AsyncIterator[ConsensusRunner]:
    runner = ConsensusRunner(
        name="n1",
        advertise_address="127.0.0.1:1",
        store=store,
        transport=NoPeers(),
        address_of=lambda name: None,
        state_machine=state,
        config=ElectionConfig(),
        bootstrap=True,
        snapshot_every=snapshot_every,
    )
    await runner.start()
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(check: Callable[[], bool], what: str, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_an_entry_of_a_newer_level_stops_the_node_until_it_is_upgraded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with await Store.open(tmp_path / "node.sqlite") as store:
        old = ControlState(protocol_level=1)
        with caplog.at_level(logging.ERROR, logger="murmur.consensus"):
            async with running(store, old) as runner:
                await until(runner.state_is_current, "the lone voter leads")
                assert isinstance(await runner.propose(job("before")), ApplyResult)
                # A project: what a version at level 1 would read as a plain job.
                with pytest.raises(NotLeaderError, match="cannot apply the control log"):
                    await runner.propose(job("with-project", project="vision"))
                assert "needs control protocol 5" in runner.halted
                assert not runner.is_voter  # its state answers no reads
                await asyncio.sleep(1.5)  # several election timeouts
                assert not runner.is_leader  # it never leads on a state it cannot keep
                with pytest.raises(NotLeaderError):
                    await runner.propose(job("after"))
        assert old.job("before") is not None
        assert old.job("with-project") is None  # stopped before it, not past it
        (record,) = [r for r in caplog.records if getattr(r, "event", "") == "consensus.halted"]
        assert "upgrade it" in record.getMessage()

        # The same store, on this version: the log applies from where it stopped.
        new = ControlState()
        async with running(store, new) as runner:
            await until(runner.state_is_current, "the upgraded node leads again")
            assert runner.halted == ""
            assert new.job("with-project") is not None
            assert new.job("with-project").spec.project == "vision"  # type: ignore[union-attr]
            assert isinstance(await runner.propose(job("after")), ApplyResult)


async def test_a_snapshot_of_a_newer_level_stops_the_node_at_start(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "node.sqlite") as store:
        async with running(store, ControlState(), snapshot_every=1) as runner:
            await until(runner.state_is_current, "the lone voter leads")
            await runner.propose(encode(SetClusterLevel(5, SECOND)))
            await runner.propose(job("compacted"))
        # Rolled back to a version that speaks level 1: it starts, and stops applying.
        async with running(store, ControlState(protocol_level=1)) as runner:
            assert "snapshot" in runner.halted
            assert "control protocol 5" in runner.halted
            await asyncio.sleep(1.0)
            assert not runner.is_leader
