"""Peer sampling and the probe ring."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from murmur.node.gossip.peers import PeerSet, ProbeRing


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20)), max_size=60))
def test_peer_set_behaves_like_a_set(operations: list[tuple[bool, int]]) -> None:
    peers, model = PeerSet(), set()
    for add, number in operations:
        name = f"n{number}"
        if add:
            peers.add(name)
            model.add(name)
        else:
            peers.discard(name)
            model.discard(name)
        assert sorted(peers.names()) == sorted(model)
        assert all(name in peers for name in model)
        assert len(peers) == len(model)


def test_sampling_is_distinct_and_honours_the_exclusion() -> None:
    peers = PeerSet()
    for index in range(10):
        peers.add(f"n{index}")
    rng = random.Random(3)
    for _ in range(100):
        picked = peers.sample(rng, 3, exclude="n0")
        assert len(picked) == 3
        assert len(set(picked)) == 3
        assert "n0" not in picked
    assert sorted(peers.sample(rng, 50)) == sorted(peers.names())


def test_ring_visits_each_live_member_once_per_round_and_skips_the_departed() -> None:
    live = PeerSet()
    for name in "abcde":
        live.add(name)
    ring, rng = ProbeRing(), random.Random(5)
    first_round = [ring.next(rng, live) for _ in range(5)]
    assert sorted(first_round) == list("abcde")  # type: ignore[type-var]
    live.discard("c")
    second_round = [ring.next(rng, live) for _ in range(4)]
    assert sorted(second_round) == list("abde")  # type: ignore[type-var]


def test_a_member_added_mid_round_is_probed_in_that_round() -> None:
    live = PeerSet()
    for name in "abcd":
        live.add(name)
    ring, rng = ProbeRing(), random.Random(1)
    seen = [ring.next(rng, live)]
    live.add("new")
    ring.insert(rng, "new")
    seen += [ring.next(rng, live) for _ in range(4)]
    assert sorted(str(name) for name in seen) == ["a", "b", "c", "d", "new"]


def test_an_empty_ring_has_nobody_to_probe() -> None:
    assert ProbeRing().next(random.Random(1), PeerSet()) is None
