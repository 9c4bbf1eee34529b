"""A node's drain: committed to the control log before its own flag, and the flag
brought back in step with the log by the leader (node/control/drain.py,
node/control/leader/drain_sync.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from murmur.node.agent.gpus import open_gpu_probe
from murmur.node.config import HostPort
from murmur.node.control.drain import NodeDrain
from murmur.node.control.leader.drain_sync import DrainFlagSync
from murmur.node.control.queue import ControlState, SetNodeDrain, encode
from murmur.node.errors import UnavailableError
from murmur.node.event_log import EventLog
from murmur.node.local_node import LocalNode
from murmur.storage import Store
from murmur.v1 import node_pb2, types_pb2


def local_node(name: str = "gpu2") -> LocalNode:
    return LocalNode(
        name=name,
        address=HostPort("127.0.0.1", 7070),
        join_address=None,
        holds_ca=False,
        gpu_probe=open_gpu_probe(simulate="1xA100-80GB"),
        labels={},
    )


class Clock:
    def __init__(self, now: int = 1_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture
async def drain_store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(tmp_path / "node.sqlite") as store:
        yield store


async def test_the_drain_is_committed_before_the_flag_and_a_refusal_changes_nothing(
    drain_store: Store,
) -> None:
    local = local_node()
    committed: list[tuple[SetNodeDrain, bool]] = []
    refuse = False

    async def replicate(command: SetNodeDrain) -> None:
        if refuse:
            raise UnavailableError("no leader")
        committed.append((command, local.draining))

    drain = NodeDrain(
        store=drain_store, local=local, events=EventLog(drain_store), replicate=replicate,
        clock_us=Clock(),
    )  # fmt: skip
    info = await drain.set(True, requested_by="admin")
    assert info.state == types_pb2.NODE_STATE_DRAINING
    # The flag was still off while the command was committed.
    assert committed == [(SetNodeDrain("gpu2", True, "admin", 1_000), False)]
    # A second drain commits again (the log may disagree), with a later time.
    await drain.set(True, requested_by="admin")
    assert committed[-1][0].at_us == 1_001
    refuse = True
    with pytest.raises(UnavailableError):
        await drain.set(False, requested_by="admin")
    assert local.draining
    assert await drain_store.get_meta("node-draining") == "1"
    events = await drain_store.list_events(subject="gpu2")
    assert [event.kind for event in events] == ["node.drained"]


async def test_the_flag_follows_the_log_unless_set_since(drain_store: Store) -> None:
    local = local_node()
    clock = Clock(5_000)

    async def replicate(command: SetNodeDrain) -> None:
        return None

    drain = NodeDrain(
        store=drain_store, local=local, events=EventLog(drain_store), replicate=replicate,
        clock_us=clock,
    )  # fmt: skip
    await drain.set(True, requested_by="admin")
    # The log's drain from before this node's own: ignored.
    info = await drain.follow_log(False, at_us=4_000, requested_by="bob")
    assert info.state == types_pb2.NODE_STATE_DRAINING
    # A newer one (the node stopped before keeping its flag): taken.
    info = await drain.follow_log(False, at_us=6_000, requested_by="bob")
    assert info.state == types_pb2.NODE_STATE_ALIVE
    # A restart keeps the flag and its time; the next drain is later still.
    again = NodeDrain(
        store=drain_store, local=local_node(), events=EventLog(drain_store), replicate=replicate,
        clock_us=Clock(10),
    )  # fmt: skip
    await again.load()
    assert (await again.follow_log(True, at_us=6_000, requested_by="x")).state == (
        types_pb2.NODE_STATE_ALIVE
    )
    seen: list[SetNodeDrain] = []

    async def record(command: SetNodeDrain) -> None:
        seen.append(command)

    later = NodeDrain(
        store=drain_store, local=local_node(), events=EventLog(drain_store), replicate=record,
        clock_us=Clock(10),
    )  # fmt: skip
    await later.load()
    await later.set(True, requested_by="admin")
    assert seen[0].at_us == 6_001


class FakeConsensus:
    name = "gpu1"
    is_leader = True

    def state_is_current(self) -> bool:
        return True


class FakeView:
    def __init__(self, nodes: dict[str, types_pb2.NodeInfo]) -> None:
        self.nodes = nodes

    def node(self, name: str) -> types_pb2.NodeInfo | None:
        return self.nodes.get(name)


class FakeStub:
    def __init__(self) -> None:
        self.calls: list[node_pb2.SetDrainingRequest] = []

    async def SetDraining(self, request: node_pb2.SetDrainingRequest, **_: Any) -> None:
        self.calls.append(request)


async def test_the_leader_tells_a_node_that_disagrees_twice_in_a_row(drain_store: Store) -> None:
    control = ControlState()
    control.apply(1, 1, encode(SetNodeDrain("gpu2", True, "admin", 700)))
    control.apply(1, 2, encode(SetNodeDrain("gpu3", False, "admin", 800)))
    control.apply(1, 3, encode(SetNodeDrain("gpu1", True, "admin", 900)))
    alive, draining = types_pb2.NODE_STATE_ALIVE, types_pb2.NODE_STATE_DRAINING
    view = FakeView(
        {
            "gpu2": types_pb2.NodeInfo(name="gpu2", address="a2", state=alive),  # disagrees
            "gpu3": types_pb2.NodeInfo(name="gpu3", address="a3", state=draining),  # disagrees
        }
    )
    stub = FakeStub()
    leader_local = local_node("gpu1")
    own = NodeDrain(store=drain_store, local=leader_local, events=EventLog(drain_store))
    view.nodes["gpu1"] = leader_local.describe()  # alive, but the log says drained
    sync = DrainFlagSync(
        consensus=FakeConsensus(),  # type: ignore[arg-type]
        control=control,
        view=view,  # type: ignore[arg-type]
        drain=own,
        node_stub=lambda address: stub,  # type: ignore[arg-type,return-value]
    )
    assert await sync.sync_once() == []  # gossip may lag a round
    view.nodes["gpu3"] = types_pb2.NodeInfo(name="gpu3", address="a3", state=alive)  # caught up
    assert await sync.sync_once() == ["gpu1", "gpu2"]
    assert [(c.draining, c.from_log, c.at_us, c.requested_by) for c in stub.calls] == [
        (True, True, 700, "admin")
    ]
    assert leader_local.draining
    view.nodes["gpu1"] = leader_local.describe()  # as the view shows this node: live
    # A node that is not up is not told.
    view.nodes["gpu2"] = types_pb2.NodeInfo(name="gpu2", state=types_pb2.NODE_STATE_SUSPECT)
    assert await sync.sync_once() == []
    assert await sync.sync_once() == []
