"""``murmur top`` names the leader and counts GPUs as ``murmur status`` does: never a
gone node's leader flag or an older term's, and no GPUs of nodes that are gone."""

from __future__ import annotations

from murmur.tui.connection import Connection
from murmur.tui.state import ClusterState
from murmur.tui.widgets.header import header_text
from murmur.v1 import types_pb2
from tests.tui.fake_cluster import FakeCluster, make_node


def state_of(*nodes: types_pb2.NodeInfo) -> ClusterState:
    state = ClusterState()
    for node in nodes:
        state.apply_node(node)
    return state


def test_the_leader_is_the_live_claim_of_the_newest_term() -> None:
    old = make_node("m2", leader=True, state=types_pb2.NODE_STATE_DEAD)
    old.term = 12
    new = make_node("m3", leader=True)
    new.term = 13
    assert state_of(old, new).leader() == "m3"
    assert state_of(old).leader() == ""
    stale = make_node("m1", leader=True)
    stale.term = 11
    assert state_of(stale, new).leader() == "m3"


def test_gpus_of_gone_nodes_are_not_counted() -> None:
    state = state_of(
        make_node("m1", gpus=4, used=2),
        make_node("m2", gpus=4, used=4, state=types_pb2.NODE_STATE_DEAD),
        make_node("m3", gpus=2, state=types_pb2.NODE_STATE_LEFT),
    )
    fake = FakeCluster(nodes=list(state.nodes.values()))
    text = header_text("cluster", Connection(fake.address, lambda address: fake), state).plain
    assert "GPUs 2/4 in use" in text


async def test_on_a_narrow_terminal_the_header_keeps_its_numbers_line() -> None:
    """The bar is two lines high: a first line wrapped on a narrow terminal pushed the
    cluster's numbers out of sight (seen in the tmux test); it is cut instead."""
    from murmur.tui import MurmurTop
    from tests.tui.conftest import wait_for_text
    from tests.tui.fake_cluster import EPOCH

    fake = FakeCluster(nodes=[make_node("m1", gpus=4, used=2, leader=True)])
    app = MurmurTop(Connection(fake.address, lambda address: fake), clock=lambda: EPOCH)
    async with app.run_test(size=(60, 20)) as pilot:
        text = await wait_for_text(pilot, "nodes 1 (1 alive)")
        first, second = (line.strip() for line in text.splitlines()[:2])
        assert first.startswith("murmur top")
        assert first.endswith("…")
        assert second.startswith("nodes 1 (1 alive)")
