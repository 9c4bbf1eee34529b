"""Whatever arrives, in whatever order, the state machine keeps its invariants."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.node.gossip import (
    Ack,
    Alive,
    Dead,
    DigestEntry,
    FullState,
    Gossip,
    GossipConfig,
    Leave,
    Member,
    Membership,
    MemberState,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPullRequest,
    PushPullResponse,
    PushPullStates,
    Suspect,
    Update,
)

NAMES = ["me", "a", "b", "c", "d"]
names = st.sampled_from(NAMES)
small = st.integers(0, 4)
states = st.sampled_from(MemberState)
updates: st.SearchStrategy[Update] = st.one_of(
    st.builds(Alive, names, small, names.map(lambda n: f"{n}:1"), st.binary(max_size=2), small),
    st.builds(Suspect, names, small, names),
    st.builds(Dead, names, small, names),
    st.builds(Leave, names, small),
)
update_lists = st.lists(updates, max_size=4).map(tuple)
full_states = st.builds(
    FullState,
    names,
    names.map(lambda n: f"{n}:1"),
    small,
    states,
    st.binary(max_size=2),
    small,
    small,
)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Ping, small, names, update_lists),
    st.builds(Ack, small, update_lists),
    st.builds(PingReq, small, names, names, update_lists),
    st.builds(Nack, small),
    st.builds(Gossip, update_lists),
    st.builds(
        PushPullRequest,
        st.lists(st.builds(DigestEntry, names, small, states, small, small), max_size=4).map(tuple),
        st.lists(full_states, max_size=3).map(tuple),
        st.booleans(),
    ),
    st.builds(
        PushPullResponse,
        st.lists(full_states, max_size=3).map(tuple),
        st.lists(names, max_size=3).map(tuple),
    ),
    st.builds(PushPullStates, st.lists(full_states, max_size=3).map(tuple)),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("receive"), messages, st.floats(0, 3)),
        st.tuples(st.just("tick"), st.none(), st.floats(0, 3)),
        st.tuples(st.just("meta"), st.none(), st.floats(0, 3)),
        st.tuples(st.just("leave"), st.none(), st.floats(0, 3)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(steps, st.integers(0, 2**16))
def test_invariants_hold_under_arbitrary_input(
    script: list[tuple[str, Message | None, float]], seed: int
) -> None:
    config = GossipConfig(dead_node_reclaim=5.0, push_pull_interval=2.0, reconnect_interval=3.0)
    machine = Membership(
        "me",
        "me:1",
        config=config,
        rng=random.Random(seed),
        now=0.0,
        initial_members=[Member(n, f"{n}:1", 0, MemberState.ALIVE, 0.0) for n in NAMES[1:3]],
    )
    now = 0.0
    incarnation = 0
    for action, message, advance in script:
        now += advance
        if action == "receive":
            assert message is not None
            machine.receive(message, "a:1", now)
        elif action == "tick":
            now = max(now, min(machine.next_deadline(), now + 10))
            machine.tick(now)
            assert machine.next_deadline() > now, "a tick must consume what is due"
        elif action == "meta":
            machine.update_local_meta(b"m", now)
        else:
            machine.leave(now)
        assert machine.incarnation >= incarnation
        incarnation = machine.incarnation
        local = machine.local
        assert local.state is (MemberState.LEFT if machine.leaving else MemberState.ALIVE)
        others = [m for m in machine.members() if m.name != "me"]
        assert machine.cluster_size() == 1 + sum(m.state.is_live for m in others)
        assert all(m.meta_incarnation <= m.incarnation for m in others)
