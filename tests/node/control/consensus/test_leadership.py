"""Who leads, as a node tells it (node/control/consensus/leadership.py): a leader is named
only with the term it leads, and never while a newer term is known."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from murmur.node.control.consensus.leadership import (
    DOWN_STATES,
    Leadership,
    known_leadership,
    mark_roles,
    raft_leadership,
)
from murmur.node.control.consensus.runner import ConsensusStatus
from murmur.node.control.raft import Role
from murmur.v1 import types_pb2

ALIVE = types_pb2.NODE_STATE_ALIVE
SUSPECT = types_pb2.NODE_STATE_SUSPECT
DEAD = types_pb2.NODE_STATE_DEAD
LEFT = types_pb2.NODE_STATE_LEFT
DRAINING = types_pb2.NODE_STATE_DRAINING


def raft(
    name: str,
    *,
    term: int,
    leader: str | None,
    voters: set[str],
    role: Role = Role.FOLLOWER,
) -> ConsensusStatus:
    return ConsensusStatus(
        name=name,
        role=role,
        term=term,
        leader=leader,
        voters=frozenset(voters),
        commit_index=0,
        last_index=0,
    )


def node(
    name: str,
    *,
    term: int = 0,
    leader: bool = False,
    voter: bool = False,
    state: types_pb2.NodeState.ValueType = ALIVE,
) -> types_pb2.NodeInfo:
    return types_pb2.NodeInfo(
        name=name,
        address=f"{name}:7070",
        state=state,
        term=term,
        leader=leader,
        voter=voter,
    )


# --- a voter: its Raft, and nothing else ------------------------------------------------


def test_a_voter_in_an_election_names_no_leader_though_gossip_still_says_the_old_one() -> None:
    # The bug: m2 led term 12 and died; m1 moved to term 13 (an election). Gossip
    # still holds m2 alive, claiming term 12. Pairing m2 with 13 was the lie.
    local = raft("m1", term=13, leader=None, voters={"m1", "m2", "m3"}, role=Role.CANDIDATE)
    nodes = [
        node("m1", term=13, voter=True),
        node("m2", term=12, leader=True, voter=True),
        node("m3", term=12, voter=True),
    ]
    assert known_leadership(local, nodes) == Leadership(
        leader="", term=13, voters=("m1", "m2", "m3"), leader_address=""
    )


def test_a_voter_names_the_leader_its_raft_follows_in_that_term() -> None:
    local = raft("m1", term=13, leader="m3", voters={"m1", "m2", "m3"})
    nodes = [node("m1", term=13), node("m2", term=12, leader=True), node("m3", term=12)]
    leadership = known_leadership(local, nodes)
    assert (leadership.leader, leadership.term, leadership.leader_address) == ("m3", 13, "m3:7070")
    assert raft_leadership(local, lambda name: f"{name}:7070") == leadership


def test_a_voter_lists_its_raft_voters_dead_ones_included() -> None:
    local = raft("vm", term=3, leader=None, voters={"gpu2", "vm"})
    nodes = [node("vm", term=3, voter=True), node("gpu2", term=3, voter=True, state=DEAD)]
    leadership = known_leadership(local, nodes)
    assert (leadership.leader, leadership.voters) == ("", ("gpu2", "vm"))


def test_a_removed_voter_is_not_listed_whatever_it_last_gossiped() -> None:
    local = raft("vm", term=4, leader="vm", voters={"gpu2", "vm"}, role=Role.LEADER)
    nodes = [
        node("vm", term=4, voter=True, leader=True),
        node("gpu2", term=4, voter=True),
        node("gpu3", term=3, voter=True, state=LEFT),
    ]
    leadership = known_leadership(local, nodes)
    assert leadership.voters == ("gpu2", "vm")
    mark_roles(nodes, leadership)
    assert [n.name for n in nodes if n.voter] == ["vm", "gpu2"]


def test_a_node_without_raft_state_is_not_a_voter() -> None:
    assert raft_leadership(None, lambda name: "") is None
    outside = raft("x", term=5, leader="m1", voters={"m1", "m2", "m3"})
    assert raft_leadership(outside, lambda name: "") is None


# --- a node outside the voters: its Raft and gossip together ----------------------------


def test_a_non_voter_takes_the_live_claim_of_the_newest_term_with_that_term() -> None:
    nodes = [
        node("m1", term=12, voter=True),
        node("m2", term=12, leader=True, voter=True),
        node("m3", term=12, voter=True),
        node("x", term=0),
    ]
    leadership = known_leadership(None, nodes)
    assert (leadership.leader, leadership.term) == ("m2", 12)
    assert leadership.voters == ("m1", "m2", "m3")


def test_a_non_voter_names_no_leader_when_a_newer_term_has_no_claim_yet() -> None:
    nodes = [
        node("m1", term=13, voter=True),
        node("m2", term=12, leader=True, voter=True),
        node("m3", term=12, voter=True),
    ]
    leadership = known_leadership(None, nodes)
    assert (leadership.leader, leadership.term) == ("", 13)


def test_a_non_voter_ignores_the_claim_of_a_dead_or_suspect_node() -> None:
    for state in (DEAD, LEFT, SUSPECT):
        nodes = [node("m1", term=12), node("m2", term=12, leader=True, state=state)]
        assert known_leadership(None, nodes).leader == ""


def test_a_non_voter_weighs_the_leader_it_heard_as_a_learner() -> None:
    local = raft("x", term=13, leader="m3", voters={"m1", "m2", "m3"})
    nodes = [
        node("m1", term=13, voter=True),
        node("m2", term=12, leader=True, voter=True),
        node("m3", term=12, voter=True),  # its claim has not arrived by gossip yet
    ]
    leadership = known_leadership(local, nodes)
    assert (leadership.leader, leadership.term) == ("m3", 13)
    # ... but not once gossip holds it dead, nor once a newer term is known.
    nodes[2].state = DEAD
    assert known_leadership(local, nodes).leader == ""
    nodes[2].state = ALIVE
    nodes[0].term = 14
    assert (known_leadership(local, nodes).leader, known_leadership(local, nodes).term) == ("", 14)


# --- the rule, whatever the inputs --------------------------------------------------------

NAMES = ("m1", "m2", "m3", "m4")
STATES = (ALIVE, SUSPECT, DEAD, LEFT, DRAINING)

gossiped = st.lists(
    st.builds(
        node,
        st.sampled_from(NAMES),
        term=st.integers(0, 6),
        leader=st.booleans(),
        voter=st.booleans(),
        state=st.sampled_from(STATES),
    ),
    max_size=4,
    unique_by=lambda info: info.name,
)
local_views = st.none() | st.builds(
    raft,
    st.sampled_from(NAMES),
    term=st.integers(0, 6),
    leader=st.none() | st.sampled_from(NAMES),
    voters=st.sets(st.sampled_from(NAMES), max_size=4),
)


@given(local=local_views, nodes=gossiped)
def test_a_leader_is_named_only_with_a_term_it_claimed_and_no_newer_term_known(
    local: ConsensusStatus | None, nodes: list[types_pb2.NodeInfo]
) -> None:
    leadership = known_leadership(local, nodes)
    up = [n for n in nodes if n.state not in DOWN_STATES]
    if local is not None and local.name in local.voters:
        # A voter: its Raft's pair, exactly.
        assert (leadership.leader or None, leadership.term) == (local.leader, local.term)
        assert set(leadership.voters) == set(local.voters)
        return
    newest = max([local.term if local else 0, *(n.term for n in up)])
    if not leadership.leader:
        assert leadership.term == newest
        return
    assert leadership.term == newest  # no newer term known: not during an election
    heard = local is not None and (local.leader, local.term) == (
        leadership.leader,
        leadership.term,
    )
    claimed = any(
        n.name == leadership.leader and n.leader and n.term == leadership.term for n in up
    )
    assert heard or claimed  # a term the named node was heard or claims to lead
    assert all(n.state not in (*DOWN_STATES, SUSPECT) for n in nodes if n.name == leadership.leader)


@given(local=local_views, nodes=gossiped)
def test_marked_roles_say_what_the_leadership_says_and_read_back_the_same(
    local: ConsensusStatus | None, nodes: list[types_pb2.NodeInfo]
) -> None:
    leadership = known_leadership(local, nodes)
    mark_roles(nodes, leadership)
    assert [n.name for n in nodes if n.leader] == (
        [leadership.leader] if leadership.leader in {n.name for n in nodes} else []
    )
    assert {n.name for n in nodes if n.voter} == set(leadership.voters) & {n.name for n in nodes}
    # What a node lists is what its status says: the daemon's forwarding reads the
    # marked list again and must find the same leader in the same term.
    assert known_leadership(local, nodes) == leadership
