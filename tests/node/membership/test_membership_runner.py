"""MembershipRunner over an in-memory transport: what it does with each send outcome,
its bounds, its metadata refresh, its loop-lag watch and its task ownership."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.node.gossip import GossipConfig, MemberState
from murmur.node.membership import (
    MembershipConfigError,
    MembershipError,
    MembershipRunner,
    SendOutcome,
    encode_meta,
)
from murmur.v1 import types_pb2
from tests.node.membership.gossip_cluster import FAST, eventually, node_info

SLOW_SUSPICION = dataclasses.replace(FAST, suspicion_mult=100, suspicion_min_mult=100)
"""Suspicion alone takes at least 20 s (100 x 0.2 s probe interval): a member dead
sooner than that was declared dead because a send was refused."""


@dataclass
class MemoryNetwork:
    """Delivers payloads by calling the addressee's ``receive``; ``outcomes`` forces
    what sends to an address return instead (a crash, a black hole)."""

    runners: dict[str, MembershipRunner] = field(default_factory=dict)
    outcomes: dict[str, SendOutcome] = field(default_factory=dict)

    async def send(
        self,
        address: str,
        payload: bytes,
        *,
        from_address: str,
        timeout: float,  # noqa: ASYNC109 - the transport protocol's deadline
    ) -> SendOutcome:
        forced = self.outcomes.get(address)
        if forced is not None:
            return forced
        runner = self.runners.get(address)
        if runner is None:
            return SendOutcome.REFUSED
        await runner.receive(from_address, payload)
        return SendOutcome.OK


@dataclass
class MemoryNode:
    runner: MembershipRunner
    info: types_pb2.NodeInfo
    task: asyncio.Task[None]

    def state_of(self, name: str) -> MemberState | None:
        member = self.runner.member(name)
        return None if member is None else member.state


@dataclass
class MemoryLab:
    network: MemoryNetwork = field(default_factory=MemoryNetwork)
    nodes: list[MemoryNode] = field(default_factory=list)

    def start(
        self,
        name: str,
        *,
        seeds: list[str],
        config: GossipConfig = FAST,
        meta_source: Callable[[types_pb2.NodeInfo], bytes] = encode_meta,
    ) -> MemoryNode:
        address = f"{name}:1"
        info = node_info(name, address)
        runner = MembershipRunner(
            name=name,
            advertise_address=address,
            transport=self.network,
            config=config,
            seeds=seeds,
            meta_source=lambda: meta_source(info),
            rng_seed=len(self.nodes) + 1,
            meta_refresh_interval=0.05,
        )
        self.network.runners[address] = runner
        node = MemoryNode(runner, info, asyncio.create_task(runner.run()))
        self.nodes.append(node)
        return node

    async def stop(self, node: MemoryNode) -> None:
        node.task.cancel()
        await asyncio.gather(node.task, return_exceptions=True)


@pytest.fixture
async def memory_lab() -> AsyncIterator[MemoryLab]:
    lab = MemoryLab()
    try:
        yield lab
    finally:
        for node in lab.nodes:
            await lab.stop(node)


async def two_joined(lab: MemoryLab, config: GossipConfig) -> tuple[MemoryNode, MemoryNode]:
    a = lab.start("a", seeds=[], config=config)
    b = lab.start("b", seeds=["a:1"], config=config)
    async with asyncio.timeout(10):
        await asyncio.gather(a.runner.join(), b.runner.join())
    await eventually(lambda: a.state_of("b") is MemberState.ALIVE, what="a seeing b")
    return a, b


def test_a_config_too_small_for_node_metadata_is_refused() -> None:
    with pytest.raises(MembershipConfigError, match="max_piggyback_bytes"):
        MembershipRunner(
            name="a",
            advertise_address="a:1",
            transport=MemoryNetwork(),
            config=GossipConfig(),  # memberlist's UDP-sized 1400 bytes
            seeds=[],
            meta_source=lambda: b"",
        )


async def test_a_refused_send_gets_a_crashed_member_declared_dead(memory_lab: MemoryLab) -> None:
    a, b = await two_joined(memory_lab, SLOW_SUSPICION)
    b.info.state = types_pb2.NODE_STATE_DRAINING
    await eventually(
        lambda: (
            (m := a.runner.member("b")) is not None
            and m.info is not None
            and m.info.state == types_pb2.NODE_STATE_DRAINING
        ),
        what="a seeing b draining",
    )

    await memory_lab.stop(b)
    memory_lab.network.outcomes["b:1"] = SendOutcome.REFUSED

    await eventually(
        lambda: a.state_of("b") is MemberState.DEAD, within=10, what="a declaring b dead"
    )
    assert a.runner.stats.sends_refused > 0
    member = a.runner.member("b")
    assert member is not None
    assert member.info is not None
    assert member.info.state == types_pb2.NODE_STATE_DEAD, "gossip's verdict beats draining"


async def test_a_timed_out_send_is_not_taken_for_a_crash(memory_lab: MemoryLab) -> None:
    a, b = await two_joined(memory_lab, SLOW_SUSPICION)

    await memory_lab.stop(b)
    memory_lab.network.outcomes["b:1"] = SendOutcome.TIMEOUT

    await eventually(lambda: a.state_of("b") is MemberState.SUSPECT, what="a suspecting b")
    # Far past the refused suspicion timeout (0.5 s), far before the real one (20 s).
    await asyncio.sleep(2.0)
    assert a.state_of("b") is MemberState.SUSPECT
    assert a.runner.stats.sends_timed_out > 0
    assert a.runner.stats.sends_refused == 0


async def test_sends_beyond_the_bound_are_dropped_and_cancelled_with_the_runner() -> None:
    started, cancelled = [], []
    forever = asyncio.Event()

    class StuckTransport:
        async def send(
            self,
            address: str,
            payload: bytes,
            *,
            from_address: str,
            timeout: float,  # noqa: ASYNC109
        ) -> SendOutcome:
            started.append(address)
            try:
                await forever.wait()
            except asyncio.CancelledError:
                cancelled.append(address)
                raise
            return SendOutcome.OK

    seeds = [f"seed-{i}:1" for i in range(5)]
    runner = MembershipRunner(
        name="a",
        advertise_address="a:1",
        transport=StuckTransport(),
        config=FAST,
        seeds=seeds,
        meta_source=lambda: b"",
        max_in_flight_sends=2,
    )
    task = asyncio.create_task(runner.run())
    joining = asyncio.create_task(runner.join())
    await eventually(lambda: runner.stats.sends_dropped >= 3, what="sends over the bound")
    assert len(started) == 2

    joining.cancel()
    task.cancel()
    results = await asyncio.gather(task, joining, return_exceptions=True)

    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert sorted(cancelled) == sorted(started), "in-flight sends are cancelled and awaited"


async def test_metadata_changes_are_published_and_failures_keep_the_last_blob(
    memory_lab: MemoryLab, caplog: pytest.LogCaptureFixture
) -> None:
    failing = False

    def flaky(info: types_pb2.NodeInfo) -> bytes:
        if failing:
            raise OSError("telemetry unavailable")
        return encode_meta(info)

    a = memory_lab.start("a", seeds=[])
    b = memory_lab.start("b", seeds=["a:1"], meta_source=flaky)
    async with asyncio.timeout(10):
        await asyncio.gather(a.runner.join(), b.runner.join())

    def a_sees_zone(zone: str) -> bool:
        member = a.runner.member("b")
        return (
            member is not None
            and member.info is not None
            and member.info.labels.get("zone") == zone
        )

    b.info.labels["zone"] = "x"
    await eventually(lambda: a_sees_zone("x"), what="the first change")
    published = b.runner.stats.meta_published

    failing = True
    b.info.labels["zone"] = "y"
    with caplog.at_level(logging.ERROR, logger="murmur.membership"):
        await asyncio.sleep(0.3)  # several refresh intervals
    assert b.runner.stats.meta_published == published
    assert a_sees_zone("x")
    assert [r.message for r in caplog.records] == [
        "reading this node's metadata failed: telemetry unavailable"
    ], "logged once, not on every refresh"

    failing = False
    await eventually(lambda: a_sees_zone("y"), what="the change after recovery")


async def test_a_blob_too_large_to_gossip_is_not_published(memory_lab: MemoryLab) -> None:
    blob = [b"small"]
    a = memory_lab.start("a", seeds=[], meta_source=lambda _: blob[0])
    await eventually(lambda: a.runner.member("a") is not None, what="start")
    published = a.runner.stats.meta_published

    blob[0] = b"x" * (FAST.max_piggyback_bytes + 1)
    await asyncio.sleep(0.3)

    local = a.runner.member("a")
    assert local is not None
    assert local.member.meta == b"small"
    assert a.runner.stats.meta_published == published


async def test_a_stalled_event_loop_is_measured_and_lowers_our_own_health(
    memory_lab: MemoryLab,
) -> None:
    a = memory_lab.start("a", seeds=[])
    await asyncio.sleep(0.15)  # the watcher is sleeping now
    # Usually 0, but a loaded test machine may already have stalled this loop; alone,
    # the node has no probe to succeed, so nothing lowers the score again.
    before = a.runner.health_score
    ceiling = FAST.awareness_max_multiplier - 1
    assert before < ceiling, "the loop lagged so much that the stall cannot show"

    time.sleep(FAST.loop_lag_threshold + 0.15)  # noqa: ASYNC251 - a deliberate stall
    await asyncio.sleep(0.15)

    assert a.runner.stats.loop_lag_max >= FAST.loop_lag_threshold
    assert a.runner.health_score > before


async def test_lifecycle_misuse_is_refused(memory_lab: MemoryLab) -> None:
    a = memory_lab.start("a", seeds=[])
    await a.runner.join()  # no seeds: joined at once
    assert a.runner.joined
    with pytest.raises(MembershipError, match="already running"):
        await a.runner.run()
    assert await a.runner.leave(timeout=1), "alone, there is nobody to wait for"
    with pytest.raises(MembershipError, match="cannot join again"):
        await a.runner.join()


async def test_leave_when_not_running_reports_that_nothing_went_out() -> None:
    runner = MembershipRunner(
        name="a",
        advertise_address="a:1",
        transport=MemoryNetwork(),
        config=FAST,
        seeds=[],
        meta_source=lambda: b"",
    )
    assert not await runner.leave(timeout=1)
    assert runner.leaving


def test_receive_never_raises_whatever_arrives() -> None:
    with asyncio.Runner() as loop:
        runner = MembershipRunner(
            name="a",
            advertise_address="a:1",
            transport=MemoryNetwork(),
            config=FAST,
            seeds=[],
            meta_source=lambda: b"",
        )

        @settings(max_examples=300, deadline=None)
        @given(sender=st.text(max_size=600), payload=st.binary(max_size=256))
        def receive_anything(sender: str, payload: bytes) -> None:
            loop.run(runner.receive(sender, payload))

        receive_anything()
        received = runner.stats.messages_received
        assert received >= 300
        assert runner.stats.messages_dropped > 0
        assert runner.member("a") is not None
