"""The voter manager's idle shortcut: with a full voter set, all alive, no learner and
no change pending, it asks nothing of gossip beyond the voters, and the policy would
have asked for nothing either."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.consensus.voter_manager import VoterManager
from murmur.node.control.consensus.voter_policy import (
    Liveness,
    VoterPolicyConfig,
    VoterSetView,
    next_voter_step,
)
from murmur.node.control.raft import Raft
from murmur.node.gossip import MemberState
from murmur.node.membership import MembershipRunner

CONFIG = VoterPolicyConfig(stabilization_seconds=10.0, max_voters=5, catch_up_lag=10)


@dataclass
class FakeRaft:
    node_id: str = "a"
    voters: frozenset[str] = frozenset("abcde")
    learners: frozenset[str] = frozenset()
    voter_change_pending: bool = False
    commit_index: int = 100

    def match_index(self, name: str) -> int:
        return self.commit_index


@dataclass
class FakeConsensus:
    raft: FakeRaft = field(default_factory=FakeRaft)
    is_leader: bool = True
    steps: list[tuple[str, object]] = field(default_factory=list)

    def add_learner(self, name: str) -> None:
        self.steps.append(("add_learner", name))

    def remove_learner(self, name: str) -> None:
        self.steps.append(("remove_learner", name))

    def change_voters(self, voters: frozenset[str]) -> None:
        self.steps.append(("change_voters", voters))


@dataclass
class Member:
    name: str
    state: MemberState
    info: None = None  # ClusterMember's gossiped NodeInfo: none here

    @property
    def member(self) -> Member:
        return self

    @property
    def state_changed_at(self) -> float:
        return 0.0


@dataclass
class FakeMembership:
    states: dict[str, MemberState]
    full_reads: int = 0

    def member(self, name: str) -> Member | None:
        state = self.states.get(name)
        return None if state is None else Member(name, state)

    def members(self) -> Iterable[Member]:
        self.full_reads += 1
        return [Member(name, state) for name, state in self.states.items()]


def manager(raft: FakeRaft, membership: FakeMembership) -> VoterManager:
    return VoterManager(
        consensus=cast(ConsensusRunner, FakeConsensus(raft)),
        membership=cast(MembershipRunner, membership),
        config=CONFIG,
    )


def cluster(size: int, **states: MemberState) -> dict[str, MemberState]:
    names = [chr(ord("a") + i) for i in range(size)]
    return {name: states.get(name, MemberState.ALIVE) for name in names}


def test_a_full_live_set_reads_only_the_voters() -> None:
    membership = FakeMembership(cluster(12))
    assert manager(FakeRaft(), membership).step_once() is None
    assert membership.full_reads == 0


def test_anything_else_reads_every_member() -> None:
    cases = [
        (FakeRaft(), FakeMembership(cluster(12, c=MemberState.DEAD))),
        (FakeRaft(), FakeMembership(cluster(12, c=MemberState.LEFT))),
        (FakeRaft(voters=frozenset("abcd")), FakeMembership(cluster(12))),
        (FakeRaft(learners=frozenset("f")), FakeMembership(cluster(12))),
        (FakeRaft(voter_change_pending=True), FakeMembership(cluster(12))),
        (FakeRaft(), FakeMembership({k: v for k, v in cluster(12).items() if k != "d"})),
    ]
    for raft, membership in cases:
        manager(raft, membership).step_once()
        assert membership.full_reads == 1, raft


def test_a_suspect_voter_counts_as_alive_as_the_policy_counts_it() -> None:
    membership = FakeMembership(cluster(12, b=MemberState.SUSPECT))
    assert manager(FakeRaft(), membership).step_once() is None
    assert membership.full_reads == 0


@settings(max_examples=300, deadline=None)
@given(
    others=st.integers(min_value=0, max_value=20),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_the_policy_asks_nothing_of_a_full_live_set(others: int, seed: int) -> None:
    """The shortcut's premise, on the pure policy: whatever the non-voters are."""
    rng = random.Random(seed)
    now = 1000.0
    voters = frozenset("abcde")
    members = {
        name: Liveness(alive=True, since=now - rng.uniform(0, 100)) for name in sorted(voters)
    }
    for index in range(others):
        members[f"n{index}"] = Liveness(alive=rng.random() < 0.7, since=now - rng.uniform(0, 100))
    view = VoterSetView(
        leader="a",
        voters=voters,
        learners=frozenset(),
        change_pending=False,
        match_index={},
        commit_index=rng.randrange(1000),
    )
    assert next_voter_step(view, members, now=now, config=CONFIG) is None


def test_the_fake_raft_has_what_the_manager_reads() -> None:
    for name in ("node_id", "voters", "learners", "voter_change_pending", "commit_index"):
        assert hasattr(Raft, name)
