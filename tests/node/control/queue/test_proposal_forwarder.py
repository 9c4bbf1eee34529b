"""ProposalForwarder: batching of forwarded commands, and how each outcome reaches
its caller. The leader is a scripted stand-in for ``NodeService.Propose`` (the
real call is covered by tests/node/control/queue/test_propose_batches.py and every multi-node
test that submits through a follower)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import grpc.aio
import pytest

from murmur.node.control.consensus.errors import NotLeaderError
from murmur.node.control.queue.proposal_forwarder import ProposalForwarder, status_code
from murmur.node.errors import PeerRefusedError
from murmur.v1 import node_pb2, types_pb2


class ScriptedLeader:
    """Answers each command with a job named after it, unless told otherwise; can
    hold calls open until released, and counts how many are open at once."""

    def __init__(self) -> None:
        self.calls: list[list[bytes]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.open = 0
        self.most_open = 0
        self.refuse: dict[bytes, tuple[grpc.StatusCode, str]] = {}
        self.fail_call: grpc.StatusCode | None = None
        self.drop_last = False

    async def Propose(
        self,
        request: node_pb2.ProposeRequest,
        timeout: float,  # noqa: ASYNC109 (the stub's signature)
    ) -> node_pb2.ProposeResponse:
        commands = list(request.commands)
        self.calls.append(commands)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.release.wait()
        finally:
            self.open -= 1
        if self.fail_call is not None:
            raise grpc.aio.AioRpcError(
                self.fail_call, grpc.aio.Metadata(), grpc.aio.Metadata(), "leader went away", None
            )
        outcomes = []
        for command in commands:
            if command in self.refuse:
                code, message = self.refuse[command]
                refusal = node_pb2.Refusal(code=code.value[0], message=message)
                outcomes.append(node_pb2.ProposeOutcome(refusal=refusal))
            else:
                outcomes.append(node_pb2.ProposeOutcome(job=types_pb2.Job(id=command.decode())))
        if self.drop_last:
            outcomes.pop()
        return node_pb2.ProposeResponse(outcomes=outcomes)


def forwarder_to(leader: ScriptedLeader, **kwargs: Any) -> ProposalForwarder:
    return ProposalForwarder(lambda address: leader, timeout=2.0, **kwargs)  # type: ignore[arg-type,return-value]


async def test_a_lone_command_goes_at_once_in_its_own_call() -> None:
    leader = ScriptedLeader()
    forwarder = forwarder_to(leader)
    job = await asyncio.wait_for(forwarder.forward("leader:1", b"a"), 1)
    assert job.id == "a"
    assert leader.calls == [[b"a"]]


async def test_commands_that_arrive_together_share_one_call() -> None:
    leader = ScriptedLeader()
    forwarder = forwarder_to(leader)
    names = [f"job-{i}".encode() for i in range(50)]
    jobs = await asyncio.gather(*(forwarder.forward("leader:1", name) for name in names))
    assert [job.id.encode() for job in jobs] == names
    assert leader.calls == [names]
    assert forwarder.calls_made == 1


async def test_commands_wait_while_calls_are_in_flight_then_go_in_one() -> None:
    leader = ScriptedLeader()
    leader.release.clear()
    forwarder = forwarder_to(leader, max_in_flight=2)
    first = [asyncio.create_task(forwarder.forward("leader:1", b"first"))]
    await asyncio.sleep(0.01)
    second = [asyncio.create_task(forwarder.forward("leader:1", b"second"))]
    await asyncio.sleep(0.01)
    names = [f"l{i}".encode() for i in range(30)]
    later = [asyncio.create_task(forwarder.forward("leader:1", name)) for name in names]
    await asyncio.sleep(0.01)
    assert leader.calls == [[b"first"], [b"second"]]  # two open, the rest wait
    leader.release.set()
    await asyncio.gather(*first, *second, *later)
    assert leader.calls[2] == names
    assert len(leader.calls) == 3
    assert leader.most_open == 2


async def test_a_batch_holds_at_most_max_batch_commands() -> None:
    leader = ScriptedLeader()
    forwarder = forwarder_to(leader, max_batch=10, max_in_flight=1)
    await asyncio.gather(*(forwarder.forward("leader:1", f"{i}".encode()) for i in range(25)))
    assert [len(call) for call in leader.calls] == [10, 10, 5]


async def test_each_leader_address_has_its_own_batches() -> None:
    leader = ScriptedLeader()
    forwarder = forwarder_to(leader)
    await asyncio.gather(forwarder.forward("a:1", b"x"), forwarder.forward("b:1", b"y"))
    assert sorted(leader.calls) == [[b"x"], [b"y"]]


async def test_a_refused_command_fails_alone_with_the_leaders_status() -> None:
    leader = ScriptedLeader()
    leader.refuse[b"bad"] = (grpc.StatusCode.NOT_FOUND, "no job 'bad'")
    forwarder = forwarder_to(leader)
    good, bad = await asyncio.gather(
        forwarder.forward("leader:1", b"good"),
        forwarder.forward("leader:1", b"bad"),
        return_exceptions=True,
    )
    assert isinstance(good, types_pb2.Job)
    assert good.id == "good"
    assert isinstance(bad, PeerRefusedError)
    assert bad.code is grpc.StatusCode.NOT_FOUND
    assert str(bad) == "no job 'bad'"
    assert len(leader.calls) == 1


async def test_a_command_the_leader_could_not_commit_is_to_be_retried() -> None:
    leader = ScriptedLeader()
    leader.refuse[b"late"] = (grpc.StatusCode.UNAVAILABLE, "node-1 is not the leader")
    forwarder = forwarder_to(leader)
    with pytest.raises(NotLeaderError, match="node-1 is not the leader"):
        await forwarder.forward("leader:1", b"late")


async def test_a_failed_call_fails_every_command_it_carried_as_retryable() -> None:
    leader = ScriptedLeader()
    leader.fail_call = grpc.StatusCode.UNAVAILABLE
    forwarder = forwarder_to(leader)
    results = await asyncio.gather(
        *(forwarder.forward("leader:1", f"{i}".encode()) for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(result, NotLeaderError) for result in results)


async def test_a_call_refused_outright_keeps_its_code() -> None:
    leader = ScriptedLeader()
    leader.fail_call = grpc.StatusCode.PERMISSION_DENIED
    forwarder = forwarder_to(leader)
    with pytest.raises(PeerRefusedError) as refused:
        await forwarder.forward("leader:1", b"x")
    assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED


async def test_a_command_left_unanswered_is_to_be_retried() -> None:
    leader = ScriptedLeader()
    leader.drop_last = True
    forwarder = forwarder_to(leader)
    first, second = await asyncio.gather(
        forwarder.forward("leader:1", b"a"),
        forwarder.forward("leader:1", b"b"),
        return_exceptions=True,
    )
    assert isinstance(first, types_pb2.Job)
    assert isinstance(second, NotLeaderError)


async def test_a_caller_that_gave_up_before_the_call_sends_nothing() -> None:
    leader = ScriptedLeader()
    leader.release.clear()
    forwarder = forwarder_to(leader, max_in_flight=1)
    busy = asyncio.create_task(forwarder.forward("leader:1", b"busy"))
    await asyncio.sleep(0.01)
    quitter = asyncio.create_task(forwarder.forward("leader:1", b"quitter"))
    stayer = asyncio.create_task(forwarder.forward("leader:1", b"stayer"))
    await asyncio.sleep(0.01)
    quitter.cancel()
    leader.release.set()
    await asyncio.gather(busy, stayer)
    assert leader.calls == [[b"busy"], [b"stayer"]]


async def test_close_fails_calls_in_flight_and_commands_waiting_and_sends_nothing_more() -> None:
    leader = ScriptedLeader()
    leader.release.clear()
    forwarder = forwarder_to(leader, max_in_flight=1)
    in_flight = asyncio.create_task(forwarder.forward("leader:1", b"x"))
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(forwarder.forward("leader:1", b"y"))
    await asyncio.sleep(0.01)
    await forwarder.close()
    for caller in (in_flight, queued):
        with pytest.raises(NotLeaderError):
            await caller
    with pytest.raises(NotLeaderError, match="stopping"):
        await forwarder.forward("leader:1", b"z")
    await asyncio.sleep(0.01)
    assert leader.calls == [[b"x"]]


class BrokenLeaderStub:
    """A stub with a bug: the call raises something no RPC would."""

    async def Propose(self, request: node_pb2.ProposeRequest, timeout: float) -> None:  # noqa: ASYNC109
        raise TypeError("a bug on the way to the leader")


async def test_a_call_that_raises_is_logged_counted_and_its_commands_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forwarder = ProposalForwarder(lambda address: BrokenLeaderStub(), timeout=2.0)  # type: ignore[arg-type,return-value]
    with caplog.at_level(logging.ERROR, logger="murmur.jobs"):
        with pytest.raises(NotLeaderError, match="forwarding to the leader failed"):
            await forwarder.forward("leader:1", b"x")
        await asyncio.sleep(0)  # the call's end is heard after its callers'
        await forwarder.close()
    assert forwarder.calls_failed == 1
    (record,) = caplog.records
    assert record.getMessage() == "forwarding to the leader at leader:1 failed"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], TypeError)


def test_status_codes_round_trip_their_wire_numbers() -> None:
    for code in grpc.StatusCode:
        assert status_code(code.value[0]) is code
    assert status_code(999) is grpc.StatusCode.UNKNOWN
