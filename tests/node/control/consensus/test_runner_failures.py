"""A bug met applying a committed entry does not stop a node's Raft
(node/control/consensus/runner.py): a state machine that raises, or an
``on_applied`` that raises, is logged with its traceback and counted, and the
next entries apply as before. One node, bootstrapped alone, on a real store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.raft import ElectionConfig
from murmur.node.membership.transport import SendOutcome
from murmur.storage import Store


class EchoState:
    """Answers each command with its bytes, and raises on ``b"bug"``."""

    def __init__(self) -> None:
        self.applied: list[bytes] = []

    def apply(self, term: int, index: int, data: bytes) -> object:
        if data == b"bug":
            raise ZeroDivisionError("a bug in the state machine")
        self.applied.append(data)
        return data

    def snapshot_encoder(self) -> Callable[[], bytes]:
        return lambda: b""

    def restore(self, data: bytes) -> None:
        self.applied = []


class NoPeers:
    async def call(
        self, address: str, invoke: Callable[[object], Awaitable[object]]
    ) -> SendOutcome:
        return SendOutcome.REFUSED


@pytest.fixture
async def leading(tmp_path: Path) -> AsyncIterator[tuple[ConsensusRunner, EchoState]]:
    state = EchoState()
    async with await Store.open(tmp_path / "node.sqlite") as store:
        runner = ConsensusRunner(
            name="n1",
            advertise_address="127.0.0.1:1",
            store=store,
            transport=NoPeers(),
            address_of=lambda name: None,
            state_machine=state,
            config=ElectionConfig(),
            bootstrap=True,
        )
        await runner.start()
        running = asyncio.create_task(runner.run())
        try:
            deadline = time.monotonic() + 5.0
            while not runner.state_is_current():
                assert time.monotonic() < deadline, "the lone voter did not lead"
                await asyncio.sleep(0.02)
            yield runner, state
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


async def test_a_command_the_state_machine_raises_on_is_logged_counted_and_passed(
    leading: tuple[ConsensusRunner, EchoState], caplog: pytest.LogCaptureFixture
) -> None:
    runner, state = leading
    with caplog.at_level(logging.ERROR, logger="murmur.consensus"):
        with pytest.raises(ZeroDivisionError):
            await runner.propose(b"bug")
        assert await runner.propose(b"next") == b"next"  # Raft went on
    assert state.applied == [b"next"]
    assert runner.stats().apply_failures == 1
    (record,) = caplog.records
    assert record.getMessage().endswith("could not be applied")
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ZeroDivisionError)
    assert (record.event, record.failures) == ("consensus.apply_failed", 1)  # type: ignore[attr-defined]


async def test_an_on_applied_that_raises_is_logged_counted_and_raft_goes_on(
    leading: tuple[ConsensusRunner, EchoState], caplog: pytest.LogCaptureFixture
) -> None:
    runner, _ = leading
    heard: list[object] = []

    def on_applied(result: object) -> None:
        if result == b"first":
            raise KeyError("a watcher's bug")
        heard.append(result)

    runner.on_applied = on_applied
    with caplog.at_level(logging.ERROR, logger="murmur.consensus"):
        assert await runner.propose(b"first") == b"first"  # applied: its proposer hears
        assert await runner.propose(b"second") == b"second"
    assert heard == [b"second"]
    assert runner.stats().on_applied_failures == 1
    (record,) = caplog.records
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], KeyError)
    assert (record.event, record.failures) == ("consensus.on_applied_failed", 1)  # type: ignore[attr-defined]
