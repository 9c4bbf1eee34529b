"""The voter-set policy: each rule on a hand-made snapshot, then properties over
random snapshots and over simulated timelines of nodes joining and dying."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.node.control.consensus.voter_policy import (
    AddLearner,
    Liveness,
    PromoteLearner,
    RemovalReason,
    RemoveLearner,
    RemoveVoter,
    VoterPolicyConfig,
    VoterPolicyError,
    VoterSetView,
    VoterStep,
    next_voter_step,
    quorum,
    target_voter_count,
)

NOW = 1000.0
CONFIG = VoterPolicyConfig(stabilization_seconds=10.0, max_voters=5, catch_up_lag=10)


def alive(for_seconds: float = 60.0) -> Liveness:
    return Liveness(alive=True, since=NOW - for_seconds)


def dead(for_seconds: float = 60.0) -> Liveness:
    return Liveness(alive=False, since=NOW - for_seconds)


def view(
    voters: str,
    learners: str = "",
    *,
    leader: str = "a",
    pending: bool = False,
    match: Mapping[str, int] | None = None,
    commit: int = 100,
) -> VoterSetView:
    """Names are single letters: ``view("abc", "d")`` has voters a, b, c and learner d,
    every learner caught up unless ``match`` says otherwise."""
    return VoterSetView(
        leader=leader,
        voters=frozenset(voters),
        learners=frozenset(learners),
        change_pending=pending,
        match_index={name: commit for name in learners} if match is None else match,
        commit_index=commit,
    )


def step(
    snapshot: VoterSetView, config: VoterPolicyConfig = CONFIG, /, **members: Liveness
) -> VoterStep | None:
    return next_voter_step(snapshot, members, now=NOW, config=config)


# Configuration and view checks


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_voters": 4},
        {"max_voters": 0},
        {"stabilization_seconds": -1.0},
        {"stabilization_seconds": math.inf},
        {"catch_up_lag": -1},
    ],
)
def test_config_refuses_out_of_range_fields(overrides: dict[str, float]) -> None:
    with pytest.raises(VoterPolicyError):
        VoterPolicyConfig(**overrides)  # type: ignore[arg-type]


def test_view_refuses_a_leader_outside_the_voters_and_a_voter_that_is_a_learner() -> None:
    with pytest.raises(VoterPolicyError, match="leader"):
        view("bc")
    with pytest.raises(VoterPolicyError, match="both"):
        view("ab", "b")


@pytest.mark.parametrize(
    ("healthy", "max_voters", "target"),
    [(0, 5, 1), (1, 5, 1), (2, 5, 1), (3, 5, 3), (4, 5, 3), (5, 5, 5), (9, 5, 5), (9, 3, 3)],
)
def test_target_is_the_largest_odd_size_within_reach(
    healthy: int, max_voters: int, target: int
) -> None:
    assert target_voter_count(healthy, max_voters=max_voters) == target


# Growing


def test_a_lone_node_leads_itself_and_asks_for_nothing() -> None:
    assert step(view("a")) is None
    assert step(view("a"), a=dead()) is None


def test_growth_waits_for_enough_healthy_nodes_to_reach_three() -> None:
    assert step(view("a"), b=alive()) is None
    assert step(view("a"), b=alive(), c=alive(5.0)) is None
    assert step(view("a"), b=alive(), c=alive(10.0)) == AddLearner("b")


def test_the_longest_alive_spare_is_chosen_then_the_first_name() -> None:
    assert step(view("a"), b=alive(20), c=alive(30), d=alive(30)) == AddLearner("c")


def test_a_caught_up_healthy_learner_is_promoted_and_a_lagging_one_waited_for() -> None:
    assert step(view("a", "b"), b=alive(), c=alive()) == PromoteLearner("b")
    lagging = view("a", "b", match={"b": 89}, commit=100)
    assert step(lagging, b=alive(), c=alive()) is None
    assert step(view("a", "b", match={"b": 90}, commit=100), b=alive(), c=alive()) == (
        PromoteLearner("b")
    )


def test_a_learner_that_restarted_must_stabilize_again_before_promotion() -> None:
    assert step(view("a", "b"), b=alive(3.0), c=alive(), d=alive()) is None


def test_two_voters_grow_to_three_one_learner_at_a_time() -> None:
    assert step(view("ab"), b=alive(), c=alive(), d=alive()) == AddLearner("c")
    lagging = view("ab", "c", match={"c": 0})
    assert step(lagging, b=alive(), c=alive(), d=alive(), e=alive()) is None


def test_growth_stops_at_max_voters() -> None:
    everyone = {name: alive() for name in "bcdefg"}
    assert step(view("abcde"), **everyone) is None
    assert step(view("abc"), VoterPolicyConfig(max_voters=3), **everyone) is None


def test_live_voters_stay_when_the_cluster_shrinks() -> None:
    assert step(view("abcd"), b=alive(), c=alive(), d=alive()) is None
    assert step(view("ab"), b=alive()) is None


# Learners that should go


def test_a_dead_or_gone_learner_is_dropped_at_once() -> None:
    assert step(view("a", "b"), b=dead(1.0), c=alive()) == RemoveLearner("b", RemovalReason.DEAD)
    assert step(view("a", "b"), c=alive()) == RemoveLearner("b", RemovalReason.GONE)


def test_a_learner_no_longer_needed_is_dropped() -> None:
    # It was to take the set from 1 to 3, but the third node died.
    snapshot = view("a", "b", match={"b": 0})
    assert step(snapshot, b=alive(), c=dead()) == RemoveLearner("b", RemovalReason.NOT_NEEDED)


# Replacing dead voters


def test_a_voter_dead_for_less_than_the_stabilization_time_is_left_alone() -> None:
    assert step(view("abc"), b=dead(5.0), c=alive(), d=alive()) is None


def test_a_dead_voter_is_replaced_add_then_remove() -> None:
    members = {"b": dead(), "c": alive(), "d": alive()}
    assert step(view("abc"), **members) == AddLearner("d")
    assert step(view("abc", "d"), **members) == PromoteLearner("d")
    assert step(view("abcd"), **members) == RemoveVoter("b", RemovalReason.DEAD)
    assert step(view("acd"), **members) is None


def test_at_max_voters_a_dead_voter_makes_room_once_its_successor_is_caught_up() -> None:
    members = {"b": alive(), "c": alive(), "d": alive(), "e": dead(), "f": alive()}
    assert step(view("abcde"), **members) == AddLearner("f")
    assert step(view("abcde", "f", match={"f": 0}), **members) is None
    assert step(view("abcde", "f"), **members) == RemoveVoter("e", RemovalReason.DEAD)
    assert step(view("abcd", "f"), **members) == PromoteLearner("f")


def test_without_a_spare_a_single_dead_voter_of_an_odd_set_is_kept() -> None:
    assert step(view("abc"), b=alive(), c=dead()) is None
    assert step(view("abcde"), b=alive(), c=alive(), d=alive(), e=dead()) is None


def test_without_a_spare_two_dead_of_five_are_removed_longest_dead_first() -> None:
    members = {"b": alive(), "c": alive(), "d": dead(30), "e": dead(40)}
    assert step(view("abcde"), **members) == RemoveVoter("e", RemovalReason.DEAD)
    assert step(view("abcd"), **members) == RemoveVoter("d", RemovalReason.DEAD)
    assert step(view("abc"), **members) is None


def test_a_dead_voter_of_an_even_set_is_removed() -> None:
    assert step(view("abcd"), b=alive(), c=alive(), d=dead()) == RemoveVoter(
        "d", RemovalReason.DEAD
    )
    assert step(view("ab"), b=dead()) == RemoveVoter("b", RemovalReason.DEAD)


def test_no_removal_would_leave_the_alive_voters_short_of_a_quorum() -> None:
    assert step(view("abc"), b=dead(), c=dead(), d=alive(), e=alive()) == AddLearner("d")
    assert step(view("abc", "d"), b=dead(), c=dead(), d=alive(), e=alive()) is None
    assert step(view("abcd"), b=dead(), c=dead(), d=dead()) is None


def test_the_leader_is_never_removed_whatever_gossip_says_of_it() -> None:
    assert step(view("ab"), a=dead(), b=alive()) is None
    assert step(view("ab", leader="b"), b=dead(), a=alive()) is None


def test_a_voter_an_admin_removed_goes_at_once_if_the_quorum_allows() -> None:
    assert step(view("abc"), c=alive()) == RemoveVoter("b", RemovalReason.GONE)
    assert step(view("abc"), c=dead(1.0)) is None


def test_a_lowered_max_voters_removes_dead_voters_first_then_the_newest() -> None:
    three = VoterPolicyConfig(max_voters=3)
    members = {"b": alive(50), "c": alive(20), "d": alive(30), "e": dead(5.0)}
    assert step(view("abcde"), three, **members) == RemoveVoter("e", RemovalReason.DEAD)
    assert step(view("abcd"), three, **members) == RemoveVoter("c", RemovalReason.OVER_LIMIT)


def test_nothing_while_a_voter_change_is_uncommitted() -> None:
    assert step(view("abcd", pending=True), b=alive(), c=alive(), d=dead()) is None


# Properties over random snapshots

NAMES = "abcdefgh"


@st.composite
def snapshots(draw: st.DrawFn) -> tuple[VoterSetView, dict[str, Liveness], VoterPolicyConfig]:
    config = VoterPolicyConfig(
        stabilization_seconds=draw(st.sampled_from([0.0, 5.0, 10.0])),
        max_voters=draw(st.sampled_from([1, 3, 5])),
        catch_up_lag=draw(st.integers(0, 5)),
    )
    leader = draw(st.sampled_from(NAMES))
    others = [name for name in NAMES if name != leader]
    voters = {leader} | draw(st.sets(st.sampled_from(others), max_size=6))
    learners = draw(st.sets(st.sampled_from([n for n in others if n not in voters])))
    commit = draw(st.integers(0, 20))
    match = {name: draw(st.integers(0, commit)) for name in sorted(learners)}
    members = {
        name: Liveness(alive=draw(st.booleans()), since=NOW - draw(st.integers(0, 20)))
        for name in draw(st.sets(st.sampled_from(NAMES)))
    }
    snapshot = VoterSetView(
        leader=leader,
        voters=frozenset(voters),
        learners=frozenset(learners),
        change_pending=draw(st.booleans()),
        match_index=match,
        commit_index=commit,
    )
    return snapshot, members, config


def alive_voters(voters: frozenset[str], leader: str, members: Mapping[str, Liveness]) -> int:
    return sum(1 for name in voters if name == leader or (name in members and members[name].alive))


@settings(max_examples=300, deadline=None)
@given(snapshots())
def test_any_step_is_one_safe_change(
    case: tuple[VoterSetView, dict[str, Liveness], VoterPolicyConfig],
) -> None:
    snapshot, members, config = case
    result = next_voter_step(snapshot, members, now=NOW, config=config)
    if snapshot.change_pending:
        assert result is None
        return
    had_quorum = alive_voters(snapshot.voters, snapshot.leader, members) >= quorum(
        len(snapshot.voters)
    )
    match result:
        case AddLearner(name):
            assert not snapshot.learners
            assert name not in snapshot.voters
            assert members[name].alive
            assert NOW - members[name].since >= config.stabilization_seconds
        case RemoveLearner(name, _):
            assert name in snapshot.learners
        case PromoteLearner(name):
            assert name in snapshot.learners
            assert len(snapshot.voters) < config.max_voters
        case RemoveVoter(name, _):
            assert name in snapshot.voters
            assert name != snapshot.leader
    if isinstance(result, PromoteLearner | RemoveVoter) and had_quorum:
        new = apply(result, snapshot).voters
        assert alive_voters(new, snapshot.leader, members) >= quorum(len(new))


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_the_answer_depends_on_the_arguments_only(
    case: tuple[VoterSetView, dict[str, Liveness], VoterPolicyConfig],
) -> None:
    snapshot, members, config = case
    first = next_voter_step(snapshot, members, now=NOW, config=config)
    reordered = dict(reversed(list(members.items())))
    again = replace(snapshot, match_index=dict(reversed(list(snapshot.match_index.items()))))
    assert next_voter_step(again, reordered, now=NOW, config=config) == first
    assert next_voter_step(snapshot, members, now=NOW, config=config) == first


# Simulation: the leader applies every step at once, learners catch up instantly.


def apply(result: VoterStep, snapshot: VoterSetView) -> VoterSetView:
    voters, learners = set(snapshot.voters), set(snapshot.learners)
    match result:
        case AddLearner(name):
            learners.add(name)
        case PromoteLearner(name):
            learners.remove(name)
            voters.add(name)
        case RemoveVoter(name, _):
            voters.remove(name)
        case RemoveLearner(name, _):
            learners.remove(name)
    return replace(
        snapshot,
        voters=frozenset(voters),
        learners=frozenset(learners),
        match_index={name: snapshot.commit_index for name in learners},
    )


@dataclass
class Cluster:
    config: VoterPolicyConfig
    members: dict[str, Liveness] = field(default_factory=dict)
    snapshot: VoterSetView = field(default_factory=lambda: view("a"))
    steps: int = 0

    def run_policy(self, now: float) -> VoterStep | None:
        """One leader tick: ask, check, apply; a voter change is pending for one
        more ask, which must answer nothing."""
        result = next_voter_step(self.snapshot, self.members, now=now, config=self.config)
        if result is None:
            return None
        self.steps += 1
        before = self.snapshot
        self.snapshot = apply(result, before)
        voters = self.snapshot.voters
        assert len(voters) <= self.config.max_voters
        assert "a" in voters
        assert len(self.snapshot.learners) <= 1
        if before.voters != voters:
            if alive_voters(before.voters, "a", self.members) >= quorum(len(before.voters)):
                assert alive_voters(voters, "a", self.members) >= quorum(len(voters))
            pending = replace(self.snapshot, change_pending=True)
            assert next_voter_step(pending, self.members, now=now, config=self.config) is None
        return result


EVENTS = st.lists(
    st.tuples(
        st.integers(0, 15),
        st.sampled_from(NAMES[1:]),
        st.sampled_from(["alive", "dead", "gone"]),
    ),
    max_size=25,
)


@settings(max_examples=100, deadline=None)
@given(
    events=EVENTS,
    max_voters=st.sampled_from([1, 3, 5]),
    stabilization=st.sampled_from([0.0, 3.0, 10.0]),
)
def test_a_timeline_of_joins_and_deaths_never_breaks_the_voter_set(
    events: list[tuple[int, str, str]], max_voters: int, stabilization: float
) -> None:
    config = VoterPolicyConfig(stabilization_seconds=stabilization, max_voters=max_voters)
    cluster = Cluster(config)
    now = 0.0
    for wait, name, change in events:
        for _ in range(wait):
            now += 1.0
            cluster.run_policy(now)
        if change == "gone":
            cluster.members.pop(name, None)
        else:
            is_alive = change == "alive"
            current = cluster.members.get(name)
            if current is None or current.alive != is_alive:
                cluster.members[name] = Liveness(alive=is_alive, since=now)
        cluster.run_policy(now)
    for _ in range(30):
        now += 1.0
        cluster.run_policy(now)
    assert cluster.run_policy(now) is None, "a quiet cluster settles"


@settings(max_examples=100, deadline=None)
@given(
    nodes=st.integers(1, len(NAMES)),
    max_voters=st.sampled_from([1, 3, 5]),
    initial=st.integers(1, 5),
)
def test_stable_healthy_nodes_converge_to_the_target_size(
    nodes: int, max_voters: int, initial: int
) -> None:
    config = VoterPolicyConfig(max_voters=max_voters)
    names = NAMES[:nodes]
    initial_voters = names[: min(initial, nodes, max_voters)]
    cluster = Cluster(
        config,
        members={name: Liveness(alive=True, since=0.0) for name in names},
        snapshot=view(initial_voters),
    )
    bound = 2 * max_voters + 2
    while cluster.run_policy(NOW) is not None:
        assert cluster.steps <= bound
    expected = max(len(initial_voters), target_voter_count(nodes, max_voters=max_voters))
    assert len(cluster.snapshot.voters) == expected
    assert not cluster.snapshot.learners


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    max_voters=st.sampled_from([3, 5]),
    spares=st.integers(0, 3),
)
def test_dead_voters_are_replaced_when_spares_allow(
    data: st.DataObject, max_voters: int, spares: int
) -> None:
    size = data.draw(st.integers(3, max_voters), label="voters")
    dead_count = data.draw(st.integers(1, size - quorum(size)), label="dead")
    gone = data.draw(st.booleans(), label="gone")
    names = NAMES[: size + spares]
    members = {name: Liveness(alive=True, since=0.0) for name in names}
    for name in names[size - dead_count : size]:
        if gone:
            del members[name]
        else:
            members[name] = Liveness(alive=False, since=0.0)
    cluster = Cluster(VoterPolicyConfig(max_voters=max_voters), members, view(names[:size]))
    while cluster.run_policy(NOW) is not None:
        assert cluster.steps <= 4 * max_voters
    voters = cluster.snapshot.voters
    live = size - dead_count + spares
    if gone or live >= max_voters:
        # Every dead voter went; the set is as large as the live nodes allow.
        assert all(name in members and members[name].alive for name in voters)
        target = target_voter_count(live, max_voters=max_voters)
        assert len(voters) >= target
    assert alive_voters(voters, "a", members) >= quorum(len(voters))
