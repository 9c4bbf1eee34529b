"""Unit tests of the election state machine, driven by hand.

Most tests run with pre-vote off, to test Raft's core transitions one at a time;
the pre-vote tests at the end turn it on (the default).
"""

from __future__ import annotations

import math
import random

import pytest

from node.election import (
    Election,
    ElectionConfig,
    ElectionSetupError,
    Heartbeat,
    HeartbeatResponse,
    LogPosition,
    Outgoing,
    PersistentState,
    PreVote,
    PreVoteResponse,
    RequestVote,
    Role,
    VoteResponse,
)

CONFIG = ElectionConfig(pre_vote=False)
PRE_VOTE = ElectionConfig()
NEW_NODE = PersistentState()
EMPTY_LOG = LogPosition()
VOTERS = ("a", "b", "c")


def make(
    node_id: str = "a",
    voters: tuple[str, ...] = VOTERS,
    *,
    now: float = 0.0,
    persistent: PersistentState = NEW_NODE,
    log: LogPosition = EMPTY_LOG,
    seed: int = 1,
    config: ElectionConfig = CONFIG,
) -> Election:
    return Election(
        node_id,
        voters,
        config=config,
        rng=random.Random(seed),
        now=now,
        persistent=persistent,
        log=log,
    )


def stand(machine: Election) -> tuple[float, list[Outgoing]]:
    """Tick the machine at its election deadline."""
    at = machine.next_deadline()
    return at, machine.tick(at)


def elect(machine: Election) -> float:
    """Make ``machine`` (a candidate-to-be among three) the leader; returns the time."""
    at, _ = stand(machine)
    machine.receive(VoteResponse(machine.term, "b", granted=True), at)
    assert machine.is_leader
    return at


def test_starts_as_follower_with_its_saved_term_and_vote() -> None:
    machine = make(persistent=PersistentState(term=7, voted_for="b"))
    assert machine.role is Role.FOLLOWER
    assert machine.persistent == PersistentState(7, "b")
    assert machine.leader is None
    assert machine.lease_expires_at() is None


def test_node_must_be_a_voter() -> None:
    with pytest.raises(ElectionSetupError):
        make("z")


def test_election_timeout_is_drawn_between_min_and_max() -> None:
    deadlines = [make(seed=seed, now=10.0).next_deadline() - 10.0 for seed in range(200)]
    assert all(CONFIG.election_timeout_min <= d <= CONFIG.election_timeout_max for d in deadlines)
    assert len(set(deadlines)) == len(deadlines)


def test_same_seed_same_timeouts() -> None:
    assert make(seed=5).next_deadline() == make(seed=5).next_deadline()


def test_nothing_happens_before_the_election_timeout() -> None:
    machine = make()
    assert machine.tick(machine.next_deadline() - 1e-6) == []
    assert machine.role is Role.FOLLOWER
    assert machine.term == 0


def test_timeout_starts_an_election_in_a_new_term_voting_for_itself() -> None:
    machine = make(log=LogPosition(2, 9), persistent=PersistentState(term=3))
    at, out = stand(machine)
    assert machine.role is Role.CANDIDATE
    assert machine.persistent == PersistentState(4, "a")
    request = RequestVote(4, "a", LogPosition(2, 9))
    assert out == [Outgoing("b", request), Outgoing("c", request)]
    assert machine.next_deadline() >= at + CONFIG.election_timeout_min


def test_candidate_times_out_again_into_a_newer_term() -> None:
    machine = make()
    stand(machine)
    stand(machine)
    assert machine.role is Role.CANDIDATE
    assert machine.term == 2


def test_majority_of_votes_makes_a_leader_that_heartbeats_at_once() -> None:
    machine = make()
    at, _ = stand(machine)
    out = machine.receive(VoteResponse(1, "b", granted=True), at + 0.001)
    assert machine.is_leader
    assert machine.leader == "a"
    assert out == [Outgoing("b", Heartbeat(1, "a")), Outgoing("c", Heartbeat(1, "a"))]
    assert machine.next_deadline() == pytest.approx(at + 0.001 + CONFIG.heartbeat_interval)


def test_refusals_and_stale_or_duplicate_grants_do_not_elect() -> None:
    machine = make(voters=("a", "b", "c", "d", "e"))
    at, _ = stand(machine)
    machine.receive(VoteResponse(1, "b", granted=False), at)
    machine.receive(VoteResponse(1, "c", granted=True), at)
    machine.receive(VoteResponse(1, "c", granted=True), at)
    machine.receive(VoteResponse(1, "z", granted=True), at)  # not a voter
    assert machine.role is Role.CANDIDATE
    stand(machine)  # term 2
    machine.receive(VoteResponse(1, "d", granted=True), at)  # term 1: stale
    machine.receive(VoteResponse(2, "d", granted=True), at)
    assert machine.role is Role.CANDIDATE
    machine.receive(VoteResponse(2, "e", granted=True), at)
    assert machine.is_leader
    assert machine.term == 2


def test_lone_voter_elects_itself_at_its_first_tick() -> None:
    machine = make(voters=("a",), now=5.0)
    assert machine.next_deadline() == 5.0
    assert machine.tick(5.0) == []
    assert machine.is_leader
    assert machine.persistent == PersistentState(1, "a")
    assert machine.lease_expires_at() == math.inf
    assert machine.tick(1000.0) == []  # no peers: nothing to send, never steps down
    assert machine.is_leader


def test_grants_one_vote_per_term() -> None:
    machine = make("b")
    out = machine.receive(RequestVote(1, "a", LogPosition()), 0.1)
    assert out == [Outgoing("a", VoteResponse(1, "b", granted=True))]
    assert machine.persistent == PersistentState(1, "a")
    out = machine.receive(RequestVote(1, "c", LogPosition()), 0.2)
    assert out == [Outgoing("c", VoteResponse(1, "b", granted=False))]
    # The same candidate asking again (its request was retried) is granted again.
    out = machine.receive(RequestVote(1, "a", LogPosition()), 0.3)
    assert out == [Outgoing("a", VoteResponse(1, "b", granted=True))]
    # A new term frees the vote.
    out = machine.receive(RequestVote(2, "c", LogPosition()), 0.4)
    assert out == [Outgoing("c", VoteResponse(2, "b", granted=True))]


def test_restarted_voter_remembers_its_vote() -> None:
    first = make("b")
    first.receive(RequestVote(3, "a", LogPosition()), 0.1)
    again = make("b", persistent=first.persistent, seed=2)
    out = again.receive(RequestVote(3, "c", LogPosition()), 0.2)
    assert out == [Outgoing("c", VoteResponse(3, "b", granted=False))]


def test_refuses_a_candidate_whose_log_is_behind() -> None:
    machine = make("b", log=LogPosition(term=2, index=5))
    for behind in (LogPosition(1, 50), LogPosition(2, 4)):
        out = machine.receive(RequestVote(4, "a", behind), 0.1)
        assert out == [Outgoing("a", VoteResponse(4, "b", granted=False))]
    # Its term is adopted all the same, with no vote cast.
    assert machine.persistent == PersistentState(4, None)
    for ahead in (LogPosition(2, 5), LogPosition(3, 0)):
        machine = make("b", log=LogPosition(term=2, index=5))
        out = machine.receive(RequestVote(4, "a", ahead), 0.1)
        assert out == [Outgoing("a", VoteResponse(4, "b", granted=True))]


def test_update_log_changes_what_the_voter_accepts() -> None:
    machine = make("b")
    machine.update_log(LogPosition(1, 1))
    assert machine.log == LogPosition(1, 1)
    out = machine.receive(RequestVote(1, "a", LogPosition()), 0.1)
    assert out == [Outgoing("a", VoteResponse(1, "b", granted=False))]


def test_refuses_a_request_from_an_older_term() -> None:
    machine = make("b", persistent=PersistentState(term=5))
    out = machine.receive(RequestVote(4, "a", LogPosition()), 0.1)
    assert out == [Outgoing("a", VoteResponse(5, "b", granted=False))]
    assert machine.persistent == PersistentState(5, None)


def test_granting_a_vote_resets_the_election_timer() -> None:
    machine = make("b")
    before = machine.next_deadline()
    machine.receive(RequestVote(1, "a", LogPosition()), before - 0.01)
    assert machine.next_deadline() >= before - 0.01 + CONFIG.election_timeout_min


def test_refusing_a_vote_does_not_reset_the_election_timer() -> None:
    machine = make("b", log=LogPosition(1, 1))
    before = machine.next_deadline()
    machine.receive(RequestVote(1, "a", LogPosition()), before - 0.01)
    assert machine.next_deadline() == before


def test_candidate_refuses_others_in_its_own_term() -> None:
    machine = make()
    at, _ = stand(machine)
    out = machine.receive(RequestVote(1, "b", LogPosition()), at)
    assert out == [Outgoing("b", VoteResponse(1, "a", granted=False))]


def test_follower_follows_a_heartbeat_and_answers_it() -> None:
    machine = make("b")
    out = machine.receive(Heartbeat(2, "a"), 0.3)
    assert out == [Outgoing("a", HeartbeatResponse(2, "b", accepted=True))]
    assert machine.leader == "a"
    assert machine.persistent == PersistentState(2, None)
    assert machine.next_deadline() >= 0.3 + CONFIG.election_timeout_min


def test_heartbeats_keep_a_follower_from_standing() -> None:
    machine = make("b")
    now = 0.0
    for _ in range(100):
        now += CONFIG.heartbeat_interval
        machine.receive(Heartbeat(1, "a"), now)
        assert machine.tick(now) == []
    assert machine.role is Role.FOLLOWER
    assert machine.term == 1


def test_candidate_yields_to_a_leader_of_its_term() -> None:
    machine = make()
    at, _ = stand(machine)
    machine.receive(Heartbeat(1, "b"), at + 0.01)
    assert machine.role is Role.FOLLOWER
    assert machine.leader == "b"
    assert machine.persistent == PersistentState(1, "a")  # the vote stays cast


def test_stale_heartbeat_is_refused_with_the_current_term() -> None:
    machine = make("b", persistent=PersistentState(term=3))
    out = machine.receive(Heartbeat(2, "a"), 0.1)
    assert out == [Outgoing("a", HeartbeatResponse(3, "b", accepted=False))]
    assert machine.leader is None


def test_leader_steps_down_on_a_higher_term() -> None:
    for message in (
        Heartbeat(5, "b"),
        RequestVote(5, "b", LogPosition()),
        VoteResponse(5, "b", granted=False),
        HeartbeatResponse(5, "b", accepted=False),
    ):
        machine = make()
        at = elect(machine)
        machine.receive(message, at + 0.01)
        assert machine.role is Role.FOLLOWER, message
        assert machine.term == 5
        assert machine.lease_expires_at() is None


def test_leader_heartbeats_every_interval() -> None:
    machine = make()
    at = elect(machine)
    now = at
    for _ in range(3):
        now += CONFIG.heartbeat_interval
        machine.receive(HeartbeatResponse(1, "b", accepted=True), now - 0.001)
        assert machine.next_deadline() == pytest.approx(now)
        out = machine.tick(now)
        assert [o.destination for o in out] == ["b", "c"]
        assert all(o.message == Heartbeat(1, "a") for o in out)


def test_leader_keeps_its_lease_while_a_majority_answers() -> None:
    machine = make()
    now = elect(machine)
    for _ in range(50):
        now = machine.next_deadline()
        machine.tick(now)
        machine.receive(HeartbeatResponse(1, "c", accepted=True), now + 0.001)
    assert machine.is_leader
    assert machine.lease_expires_at() == pytest.approx(now + 0.001 + CONFIG.lease_timeout)


def test_leader_steps_down_when_a_majority_goes_quiet() -> None:
    machine = make()
    at = elect(machine)  # b's grant is a contact at `at`
    assert machine.lease_expires_at() == pytest.approx(at + CONFIG.lease_timeout)
    now = at
    while machine.is_leader:
        now = machine.next_deadline()
        machine.tick(now)
    assert now == pytest.approx(at + CONFIG.lease_timeout)
    assert machine.role is Role.FOLLOWER
    assert machine.leader is None
    assert machine.term == 1  # stepping down does not change the term
    assert machine.next_deadline() >= now + CONFIG.election_timeout_min


def test_refused_heartbeat_answers_do_not_renew_the_lease() -> None:
    machine = make()
    at = elect(machine)
    machine.receive(HeartbeatResponse(1, "c", accepted=False), at + 0.1)
    machine.receive(HeartbeatResponse(0, "b", accepted=True), at + 0.1)
    assert machine.lease_expires_at() == pytest.approx(at + CONFIG.lease_timeout)


def test_lease_in_five_needs_two_others() -> None:
    machine = make(voters=("a", "b", "c", "d", "e"))
    at, _ = stand(machine)
    machine.receive(VoteResponse(1, "b", granted=True), at)
    machine.receive(VoteResponse(1, "c", granted=True), at + 0.01)
    assert machine.is_leader
    machine.receive(HeartbeatResponse(1, "b", accepted=True), at + 0.2)
    # c's contact at +0.01 is the second most recent: it bounds the lease.
    assert machine.lease_expires_at() == pytest.approx(at + 0.01 + CONFIG.lease_timeout)
    machine.receive(HeartbeatResponse(1, "d", accepted=True), at + 0.3)
    assert machine.lease_expires_at() == pytest.approx(at + 0.2 + CONFIG.lease_timeout)


def test_an_expired_lease_is_noticed_on_receive_too() -> None:
    machine = make()
    at = elect(machine)
    late = at + CONFIG.lease_timeout + 0.5
    machine.receive(HeartbeatResponse(1, "b", accepted=True), late)
    assert machine.role is Role.FOLLOWER


def test_a_leader_ignores_a_heartbeat_of_its_own_term() -> None:
    machine = make()
    at = elect(machine)
    assert machine.receive(Heartbeat(1, "b"), at) == []
    assert machine.is_leader


def test_messages_from_non_voters_are_ignored() -> None:
    machine = make("b")
    assert machine.receive(RequestVote(9, "z", LogPosition()), 0.1) == []
    assert machine.receive(Heartbeat(9, "z"), 0.1) == []
    assert machine.persistent == PersistentState(0, None)


# --- pre-vote ----------------------------------------------------------------------


def test_pre_vote_timeout_asks_without_changing_term_or_vote() -> None:
    machine = make(config=PRE_VOTE, persistent=PersistentState(3, "c"), log=LogPosition(3, 4))
    at, out = stand(machine)
    assert machine.role is Role.PRE_CANDIDATE
    assert machine.persistent == PersistentState(3, "c")
    request = PreVote(4, "a", LogPosition(3, 4))
    assert out == [Outgoing("b", request), Outgoing("c", request)]
    assert machine.next_deadline() >= at + CONFIG.election_timeout_min


def test_pre_vote_majority_starts_the_real_election() -> None:
    machine = make(config=PRE_VOTE, persistent=PersistentState(3))
    at, _ = stand(machine)
    assert machine.receive(PreVoteResponse(3, "b", granted=False), at) == []
    assert machine.receive(PreVoteResponse(3, "b", granted=True), at) == []  # stale round
    out = machine.receive(PreVoteResponse(4, "c", granted=True), at)
    assert machine.role is Role.CANDIDATE
    assert machine.persistent == PersistentState(4, "a")
    assert out == [Outgoing(o, RequestVote(4, "a", LogPosition())) for o in ("b", "c")]


def test_pre_candidate_times_out_into_another_pre_vote_round() -> None:
    machine = make(config=PRE_VOTE)
    stand(machine)
    _, out = stand(machine)
    assert machine.role is Role.PRE_CANDIDATE
    assert machine.term == 0
    assert {o.message for o in out} == {PreVote(1, "a", LogPosition())}


def test_lone_voter_skips_pre_vote() -> None:
    machine = make(voters=("a",), config=PRE_VOTE)
    machine.tick(0.0)
    assert machine.is_leader


def test_voter_answers_a_pre_vote_without_changing_state() -> None:
    machine = make("b", config=PRE_VOTE, persistent=PersistentState(2, "c"))
    deadline = machine.next_deadline()
    out = machine.receive(PreVote(3, "a", LogPosition()), 0.1)
    assert out == [Outgoing("a", PreVoteResponse(3, "b", granted=True))]
    assert machine.persistent == PersistentState(2, "c")
    assert machine.next_deadline() == deadline


@pytest.mark.parametrize(
    ("request_", "why"),
    [
        (PreVote(2, "a", LogPosition()), "proposed term not above ours"),
        (PreVote(3, "a", LogPosition(1, 0)), "log behind"),
    ],
)
def test_voter_refuses_a_pre_vote(request_: PreVote, why: str) -> None:
    machine = make("b", config=PRE_VOTE, persistent=PersistentState(2), log=LogPosition(2, 1))
    out = machine.receive(request_, 0.1)
    assert out == [Outgoing("a", PreVoteResponse(2, "b", granted=False))], why


def test_voter_refuses_pre_votes_while_it_hears_a_leader() -> None:
    machine = make("b", config=PRE_VOTE)
    machine.receive(Heartbeat(1, "c"), 1.0)
    soon = 1.0 + CONFIG.election_timeout_min - 0.01
    assert machine.receive(PreVote(2, "a", LogPosition()), soon) == [
        Outgoing("a", PreVoteResponse(1, "b", granted=False))
    ]
    later = 1.0 + CONFIG.election_timeout_min + 0.001
    assert machine.receive(PreVote(2, "a", LogPosition()), later) == [
        Outgoing("a", PreVoteResponse(2, "b", granted=True))
    ]


def test_leader_refuses_pre_votes() -> None:
    machine = make(config=PRE_VOTE)
    at, _ = stand(machine)
    machine.receive(PreVoteResponse(1, "b", granted=True), at)
    machine.receive(VoteResponse(1, "b", granted=True), at)
    assert machine.is_leader
    out = machine.receive(PreVote(2, "c", LogPosition(5, 5)), at + 0.01)
    assert out == [Outgoing("c", PreVoteResponse(1, "a", granted=False))]
    assert machine.is_leader


def test_pre_candidate_adopts_a_higher_term_from_a_refusal() -> None:
    machine = make(config=PRE_VOTE)
    at, _ = stand(machine)
    machine.receive(PreVoteResponse(7, "b", granted=False), at)
    assert machine.role is Role.FOLLOWER
    assert machine.persistent == PersistentState(7, None)


def test_pre_candidate_yields_to_a_heartbeat() -> None:
    machine = make(config=PRE_VOTE)
    at, _ = stand(machine)
    machine.receive(Heartbeat(0, "b"), at)
    assert machine.role is Role.FOLLOWER
    assert machine.leader == "b"
