"""The Membership state machine, driven by hand: one message or one tick at a time."""

from __future__ import annotations

import dataclasses
import random

import pytest

from murmur.node.gossip import (
    Ack,
    Alive,
    Dead,
    EventKind,
    Gossip,
    GossipConfig,
    Leave,
    Member,
    Membership,
    MembershipEvent,
    MemberState,
    Nack,
    Outgoing,
    Ping,
    PingReq,
    PushPullRequest,
    PushPullResponse,
    PushPullStates,
    Suspect,
)
from murmur.node.gossip.pushpull import full_state

CONFIG = GossipConfig(push_pull_interval=0, reconnect_interval=0, eager_push=False)


def addr(name: str) -> str:
    return f"{name}:7946"


def peer(name: str, *, incarnation: int = 0, state: MemberState = MemberState.ALIVE) -> Member:
    return Member(name, addr(name), incarnation, state, 0.0)


class Harness:
    """A machine named "me" among peers, with its events recorded."""

    def __init__(self, peers: list[str], config: GossipConfig = CONFIG, **kwargs: object) -> None:
        self.events: list[MembershipEvent] = []
        self.machine = Membership(
            "me",
            addr("me"),
            config=config,
            rng=random.Random(1),
            now=0.0,
            initial_members=[peer(name) for name in peers],
            on_event=self.events.append,
            **kwargs,  # type: ignore[arg-type]
        )

    def kinds(self, subject: str) -> list[EventKind]:
        return [e.kind for e in self.events if e.member.name == subject]

    def state_of(self, name: str) -> MemberState:
        member = self.machine.member(name)
        assert member is not None
        return member.state

    def run_until(self, until: float) -> list[Outgoing]:
        """Tick at every deadline up to ``until``; returns everything sent."""
        out: list[Outgoing] = []
        self.now = getattr(self, "now", 0.0)
        while (deadline := self.machine.next_deadline()) <= until:
            self.now = max(self.now, deadline)
            out.extend(self.machine.tick(self.now))
        return out

    def tick_until_probe(self) -> tuple[float, Outgoing]:
        """Tick until a probe ping goes out; returns (time, the ping)."""
        for _ in range(50):
            now = self.machine.next_deadline()
            for item in self.machine.tick(now):
                if isinstance(item.message, Ping):
                    return now, item
        raise AssertionError("no probe started")


def messages_of(out: list[Outgoing], kind: type) -> list[Outgoing]:
    return [item for item in out if isinstance(item.message, kind)]


# --- probes -----------------------------------------------------------------------


def test_a_ping_for_us_is_acked_to_the_sender_with_its_seq() -> None:
    harness = Harness(["b"])
    out = harness.machine.receive(Ping(42, "me"), addr("b"), 1.0)
    acks = messages_of(out, Ack)
    assert [(a.destination, a.message.seq) for a in acks] == [(addr("b"), 42)]  # type: ignore[union-attr]


def test_a_ping_for_another_name_is_not_acked() -> None:
    harness = Harness(["b"])
    assert not messages_of(harness.machine.receive(Ping(42, "someone-else"), addr("b"), 1.0), Ack)


def test_probes_visit_every_member_once_per_round() -> None:
    peers = [f"p{i}" for i in range(6)]
    harness = Harness(peers)
    targets = []
    for _ in range(12):
        now, ping = harness.tick_until_probe()
        assert isinstance(ping.message, Ping)
        targets.append(ping.message.target)
        harness.machine.receive(Ack(ping.message.seq), ping.destination, now + 0.001)
    assert sorted(targets[:6]) == peers
    assert sorted(targets[6:]) == peers


def test_an_acked_probe_suspects_nobody_and_improves_health() -> None:
    harness = Harness(["b", "c"])
    harness.machine.report_loop_lag(1.0)
    assert harness.machine.health_score == 1
    now, ping = harness.tick_until_probe()
    assert isinstance(ping.message, Ping)
    harness.machine.receive(Ack(ping.message.seq), ping.destination, now + 0.001)
    harness.machine.tick(now + 2.0)
    assert harness.machine.health_score == 0
    assert all(harness.state_of(n) is MemberState.ALIVE for n in ("b", "c"))


def test_an_unanswered_probe_goes_indirect_then_suspects_and_tells_the_suspect_first() -> None:
    harness = Harness(["b", "c", "d", "e"])
    start, ping = harness.tick_until_probe()
    assert isinstance(ping.message, Ping)
    target = ping.message.target

    direct_timeout = start + CONFIG.probe_timeout
    assert harness.machine.next_deadline() == pytest.approx(direct_timeout)
    requests = messages_of(harness.machine.tick(direct_timeout), PingReq)
    relays = {r.destination for r in requests}
    assert len(requests) == 3
    assert addr(target) not in relays
    assert all(r.message.target == target for r in requests)  # type: ignore[union-attr]

    out = harness.machine.tick(start + CONFIG.probe_interval)
    assert harness.state_of(target) is MemberState.SUSPECT
    assert harness.kinds(target) == [EventKind.SUSPECT]
    first = out[0]
    assert first.destination == addr(target)
    assert first.message == Gossip((Suspect(target, 0, "me"),))
    # Three relays, none nacked: Lifeguard blames our own health.
    assert harness.machine.health_score == 3


def test_nacks_from_every_relay_spare_our_health() -> None:
    harness = Harness(["b", "c", "d", "e"])
    start, _ping = harness.tick_until_probe()
    requests = messages_of(harness.machine.tick(start + CONFIG.probe_timeout), PingReq)
    for request in requests:
        harness.machine.receive(Nack(request.message.seq), request.destination, start + 0.9)  # type: ignore[union-attr]
    harness.machine.tick(start + CONFIG.probe_interval)
    assert harness.machine.health_score == 0


def test_an_indirect_ack_saves_the_target() -> None:
    harness = Harness(["b", "c", "d"])
    start, ping = harness.tick_until_probe()
    assert isinstance(ping.message, Ping)
    requests = messages_of(harness.machine.tick(start + CONFIG.probe_timeout), PingReq)
    harness.machine.receive(Ack(ping.message.seq), requests[0].destination, start + 0.7)
    harness.machine.tick(start + CONFIG.probe_interval)
    assert harness.state_of(ping.message.target) is MemberState.ALIVE


def test_a_relay_forwards_the_ack_or_nacks_in_time() -> None:
    harness = Harness(["requester", "target"])
    out = harness.machine.receive(PingReq(9, "target", addr("target")), addr("requester"), 10.0)
    (ping,) = messages_of(out, Ping)
    assert ping.destination == addr("target")
    assert isinstance(ping.message, Ping)
    forwarded = harness.machine.receive(Ack(ping.message.seq), addr("target"), 10.1)
    assert [(o.destination, o.message) for o in forwarded] == [(addr("requester"), Ack(9))]

    harness.run_until(19.9)
    harness.machine.receive(PingReq(10, "target", addr("target")), addr("requester"), 20.0)
    nack_at = 20.0 + 0.8 * CONFIG.probe_timeout
    assert not messages_of(harness.run_until(nack_at - 0.01), Nack)
    nacks = messages_of(harness.run_until(nack_at), Nack)
    assert [(o.destination, o.message) for o in nacks] == [(addr("requester"), Nack(10))]


def test_a_slow_node_stretches_its_probe_timings() -> None:
    harness = Harness(["b", "c"])
    for _ in range(3):
        harness.machine.report_loop_lag(1.0)
    assert harness.machine.health_score == 3
    start, _ = harness.tick_until_probe()
    assert not messages_of(harness.run_until(start + 4 * CONFIG.probe_timeout - 0.01), PingReq)
    assert messages_of(harness.run_until(start + 4 * CONFIG.probe_timeout), PingReq)


def test_small_loop_lag_is_not_held_against_us() -> None:
    harness = Harness(["b"])
    harness.machine.report_loop_lag(CONFIG.loop_lag_threshold / 2)
    assert harness.machine.health_score == 0


# --- suspicion, refutation, death --------------------------------------------------------


def test_a_suspected_node_refutes_with_a_higher_incarnation_and_tells_the_accuser() -> None:
    harness = Harness(["b", "c"])
    out = harness.machine.receive(Gossip((Suspect("me", 0, "b"),)), addr("c"), 5.0)
    assert harness.machine.incarnation == 1
    assert harness.machine.health_score == 1
    assert Outgoing(addr("c"), Gossip((Alive("me", 1, addr("me")),))) in out


def test_an_accusation_of_an_older_life_is_answered_without_a_new_incarnation() -> None:
    harness = Harness(["b"], incarnation=4)
    out = harness.machine.receive(Gossip((Dead("me", 2, "b"),)), addr("b"), 5.0)
    assert harness.machine.incarnation == 4
    assert out == [Outgoing(addr("b"), Gossip((Alive("me", 4, addr("me")),)))]


def drive(harness: Harness, until: float, *, silent: tuple[str, ...] = ()) -> list[Outgoing]:
    """Tick at every deadline up to ``until`` with every peer but ``silent`` ones
    acking our pings at once; returns everything sent."""
    out: list[Outgoing] = []
    harness.now = getattr(harness, "now", 0.0)
    while (deadline := harness.machine.next_deadline()) <= until:
        harness.now = max(harness.now, deadline)
        sent = harness.machine.tick(harness.now)
        out.extend(sent)
        for item in sent:
            if isinstance(item.message, Ping) and item.message.target not in silent:
                harness.machine.receive(Ack(item.message.seq), item.destination, harness.now)
    return out


def test_suspicion_times_out_into_death_and_confirmations_hurry_it() -> None:
    config = GossipConfig(
        push_pull_interval=0,
        reconnect_interval=0,
        suspicion_check_lead=0,
        confirmation_probes=0,
    )
    slow, fast = Harness(list("bcdefg"), config), Harness(list("bcdefg"), config)
    for harness in (slow, fast):
        drive(harness, 9.0)
        harness.machine.receive(Gossip((Suspect("b", 0, "c"),)), addr("c"), 10.0)
    for accuser in ("d", "e"):
        fast.machine.receive(Gossip((Suspect("b", 0, accuser),)), addr(accuser), 10.1)
    n = 7
    minimum, maximum = config.suspicion_min_timeout(n), config.suspicion_max_timeout(n)
    assert (minimum, maximum) == (0.5, 24.0)
    drive(fast, 10.0 + minimum)
    assert fast.state_of("b") is MemberState.DEAD
    drive(slow, 10.0 + maximum - 0.01)
    assert slow.state_of("b") is MemberState.SUSPECT
    drive(slow, 10.0 + maximum)
    assert slow.state_of("b") is MemberState.DEAD
    assert slow.kinds("b") == [EventKind.SUSPECT, EventKind.DEAD]


def test_a_refutation_clears_the_suspicion() -> None:
    harness = Harness(["b", "c"])
    harness.machine.receive(Gossip((Suspect("b", 0, "c"),)), addr("c"), 10.0)
    harness.machine.receive(Gossip((Alive("b", 1, addr("b")),)), addr("b"), 11.0)
    assert harness.state_of("b") is MemberState.ALIVE
    harness.machine.tick(1000.0)
    assert harness.state_of("b") is MemberState.ALIVE
    assert harness.kinds("b") == [EventKind.SUSPECT, EventKind.ALIVE]


def test_an_alive_of_the_same_incarnation_does_not_clear_a_suspicion() -> None:
    harness = Harness(["b", "c"])
    harness.machine.receive(Gossip((Suspect("b", 0, "c"),)), addr("c"), 10.0)
    harness.machine.receive(Gossip((Alive("b", 0, addr("b")),)), addr("b"), 11.0)
    assert harness.state_of("b") is MemberState.SUSPECT


def test_before_declaring_death_a_suspecting_node_pings_the_suspect_once() -> None:
    # memberlist's suspicion: a 4 s lower bound, reached at once in a 3-node cluster.
    config = dataclasses.replace(CONFIG, suspicion_min_mult=4, confirmation_probes=0)
    harness = Harness(["b", "c"], config)
    harness.machine.receive(Gossip((Suspect("b", 0, "c"),)), addr("c"), 10.0)
    assert config.expected_confirmations(3) == 0
    death_at = 10.0 + config.suspicion_min_timeout(3)
    check_at = death_at - config.suspicion_check_lead
    harness.run_until(check_at - 0.001)
    out = harness.run_until(check_at)
    pings = [o.message for o in out if isinstance(o.message, Ping) and o.destination == addr("b")]
    assert pings
    assert isinstance(pings[-1], Ping)
    assert pings[-1].updates[0] == Suspect("b", 0, "me")
    # The suspect answers with its refutation; no death follows.
    harness.machine.receive(Gossip((Alive("b", 1, addr("b")),)), addr("b"), check_at + 0.01)
    harness.run_until(death_at + 0.5)
    assert EventKind.DEAD not in harness.kinds("b")


# --- confirmation probes, a node that ran late ---------------------------------------


def told_others(out: list[Outgoing], *, suspect: str = "b") -> list[object]:
    """Updates sent to anyone but the suspect (who hears of its suspicion anyway)."""
    return [
        u
        for item in out
        if item.destination != addr(suspect)
        for u in getattr(item.message, "updates", ())
    ]


def test_a_suspicion_raised_by_another_is_checked_with_a_probe_of_our_own() -> None:
    harness = Harness(list("bcdefg"))
    drive(harness, 9.9)
    harness.machine.receive(Gossip((Suspect("b", 0, "c"),)), addr("c"), 10.0)
    out = drive(harness, 10.0, silent=("b",))
    (ping,) = [o for o in messages_of(out, Ping) if o.destination == addr("b")]
    assert isinstance(ping.message, Ping)
    assert ping.message.updates[0] == Suspect("b", 0, "me"), "the suspect hears it, to refute"
    out = drive(harness, 10.0 + CONFIG.probe_timeout, silent=("b",))
    requests = [r for r in messages_of(out, PingReq) if r.message.seq == ping.message.seq]  # type: ignore[union-attr]
    assert len(requests) == CONFIG.indirect_checks
    assert all(r.message.target == "b" for r in requests)  # type: ignore[union-attr]
    # Every relay tried and failed: the probe ends at once (not at 11.0), and our
    # failure is a confirmation, gossiped with the next round.
    assert Suspect("b", 0, "me") not in told_others(drive(harness, 10.85, silent=("b",)))
    for request in requests:
        harness.machine.receive(Nack(ping.message.seq), request.destination, 10.9)
    assert harness.machine.next_deadline() == 10.9
    assert Suspect("b", 0, "me") in told_others(drive(harness, 10.9 + CONFIG.gossip_interval))
    assert harness.machine.health_score == 0


def test_a_suspect_that_answers_our_confirmation_probe_is_not_confirmed() -> None:
    harness = Harness(list("bcdefg"))
    drive(harness, 9.9)
    harness.machine.receive(Gossip((Suspect("b", 0, "c"),)), addr("c"), 10.0)
    out = drive(harness, 12.0)  # b acks
    assert [o for o in messages_of(out, Ping) if o.destination == addr("b")]
    assert Suspect("b", 0, "me") not in told_others(out)
    assert harness.state_of("b") is MemberState.SUSPECT  # until b itself refutes


def test_confirmation_probes_can_be_turned_off() -> None:
    harness = Harness(list("bcdefg"), dataclasses.replace(CONFIG, confirmation_probes=0))
    drive(harness, 9.9)
    harness.machine.receive(Gossip((Suspect("b", 0, "c"),)), addr("c"), 10.0)
    out = drive(harness, 11.0, silent=("b",))
    assert not [r for r in messages_of(out, PingReq) if r.message.target == "b"]  # type: ignore[union-attr]


def test_a_member_that_refuted_while_we_probed_it_is_not_accused() -> None:
    harness = Harness(list("bcdefg"))
    drive(harness, 9.9)
    harness.machine.receive(Gossip((Suspect("b", 0, "c"),)), addr("c"), 10.0)
    drive(harness, 10.1, silent=("b",))
    harness.machine.receive(Gossip((Alive("b", 1, addr("b")),)), addr("b"), 10.2)
    out = drive(harness, 12.0, silent=("b",))
    assert Suspect("b", 1, "me") not in told_others(out)
    assert harness.state_of("b") is MemberState.ALIVE
    assert harness.kinds("b") == [EventKind.SUSPECT, EventKind.ALIVE]


def test_a_probe_that_ran_out_while_we_were_stalled_accuses_nobody() -> None:
    harness = Harness(["b", "c", "d"])
    start, ping = harness.tick_until_probe()
    assert isinstance(ping.message, Ping)
    harness.machine.tick(start + CONFIG.probe_timeout)  # indirect probes go out...
    harness.machine.tick(start + 5.0)  # ...and we wake up four seconds late
    assert harness.state_of(ping.message.target) is MemberState.ALIVE
    # On time, the same probe would have raised a suspicion.
    on_time = Harness(["b", "c", "d"])
    start, ping = on_time.tick_until_probe()
    on_time.machine.tick(start + CONFIG.probe_timeout)
    on_time.machine.tick(start + CONFIG.probe_interval)
    assert on_time.state_of(ping.message.target) is MemberState.SUSPECT  # type: ignore[union-attr]


def suspected_with_confirmations(harness: Harness, at: float) -> None:
    """b is suspected by c and confirmed by d and e at ``at``."""
    for accuser in ("c", "d", "e"):
        harness.machine.receive(Gossip((Suspect("b", 0, accuser),)), addr(accuser), at)


def test_a_suspicion_that_expired_while_we_were_stalled_waits_for_news_first() -> None:
    config = dataclasses.replace(CONFIG, confirmation_probes=0)
    harness = Harness(list("bcdefg"), config)
    drive(harness, 9.0)
    suspected_with_confirmations(harness, 10.0)
    deadline = 10.0 + config.suspicion_min_timeout(7)
    assert harness.machine.next_deadline() <= deadline
    # Stalled until 14.0: the suspicion expired meanwhile. We ping the suspect and
    # wait a probe timeout for whatever is waiting for us to read.
    out = harness.machine.tick(14.0)
    assert harness.state_of("b") is MemberState.SUSPECT
    pings = [o for o in messages_of(out, Ping) if o.destination == addr("b")]
    assert pings
    assert pings[-1].message.updates[0] == Suspect("b", 0, "me")  # type: ignore[union-attr]
    assert harness.machine.next_deadline() == pytest.approx(14.0 + config.probe_timeout)
    harness.machine.receive(Gossip((Alive("b", 1, addr("b")),)), addr("b"), 14.1)
    harness.machine.tick(14.0 + config.probe_timeout)
    assert harness.state_of("b") is MemberState.ALIVE


def test_a_suspicion_that_expired_while_we_were_stalled_still_ends_in_death() -> None:
    config = dataclasses.replace(CONFIG, confirmation_probes=0)
    harness = Harness(list("bcdefg"), config)
    drive(harness, 9.0)
    suspected_with_confirmations(harness, 10.0)
    harness.machine.tick(14.0)
    assert harness.state_of("b") is MemberState.SUSPECT
    harness.machine.tick(14.0 + config.probe_timeout)
    assert harness.state_of("b") is MemberState.DEAD


def test_a_confirmation_that_brings_a_deadline_into_the_past_is_not_lateness() -> None:
    config = dataclasses.replace(CONFIG, confirmation_probes=0)
    harness = Harness(list("bcdefg"), config)
    drive(harness, 9.0)
    harness.machine.receive(Gossip((Suspect("b", 0, "c"),)), addr("c"), 10.0)
    drive(harness, 11.0)
    for accuser in ("d", "e"):  # the minimum (0.5 s) has long passed
        harness.machine.receive(Gossip((Suspect("b", 0, accuser),)), addr(accuser), 11.0)
    harness.machine.tick(11.0)
    assert harness.state_of("b") is MemberState.DEAD


def test_a_suspicion_of_a_member_we_hold_dead_is_answered_with_the_death() -> None:
    harness = Harness(["b", "c"])
    harness.machine.receive(Gossip((Dead("b", 2, "c"),)), addr("c"), 10.0)
    out = harness.machine.receive(Gossip((Suspect("b", 2, "d"),)), addr("d"), 11.0)
    assert Outgoing(addr("d"), Gossip((Dead("b", 2, "me"),))) in out
    # News newer than our verdict (a suspicion of its next life) is not answered.
    out = harness.machine.receive(Gossip((Suspect("b", 3, "d"),)), addr("d"), 12.0)
    assert not [o for o in out if Dead("b", 2, "me") in getattr(o.message, "updates", ())]


def test_a_member_we_hold_dead_or_suspect_that_speaks_hears_our_word() -> None:
    harness = Harness(["b", "c", "d"])
    harness.machine.receive(Gossip((Dead("b", 2, "c"), Suspect("d", 0, "c"))), addr("c"), 10.0)
    out = harness.machine.receive(Ping(7, "me"), addr("b"), 11.0)
    assert Outgoing(addr("b"), Gossip((Dead("b", 2, "me"),))) in out
    out = harness.machine.receive(Ping(8, "me"), addr("d"), 11.0)
    assert Outgoing(addr("d"), Gossip((Suspect("d", 0, "me"),))) in out
    # b refuted long ago and we missed it: its answer brings it back.
    harness.machine.receive(Gossip((Alive("b", 3, addr("b")),)), addr("b"), 11.1)
    assert harness.state_of("b") is MemberState.ALIVE
    out = harness.machine.receive(Ping(9, "me"), addr("b"), 12.0)
    assert messages_of(out, Gossip) == []


def test_a_death_declared_on_our_timer_is_told_to_the_members_that_accused() -> None:
    config = dataclasses.replace(CONFIG, confirmation_probes=0)
    harness = Harness(list("bcdefg"), config)
    drive(harness, 9.9)
    suspected_with_confirmations(harness, 10.0)
    out = drive(harness, 10.0 + config.suspicion_min_timeout(7))
    assert harness.state_of("b") is MemberState.DEAD
    told = {o.destination for o in out if o.message == Gossip((Dead("b", 0, "me"),))}
    assert {addr("c"), addr("d"), addr("e")} <= told


# --- tombstones, leave, restart ---------------------------------------------------------


def test_a_stale_alive_cannot_resurrect_a_tombstone_but_a_new_incarnation_can() -> None:
    harness = Harness(["b", "c"])
    harness.machine.receive(Gossip((Dead("b", 3, "c"),)), addr("c"), 10.0)
    assert harness.state_of("b") is MemberState.DEAD
    harness.machine.receive(Gossip((Alive("b", 3, addr("b")),)), addr("c"), 11.0)
    harness.machine.receive(Gossip((Alive("b", 2, addr("b")),)), addr("c"), 11.0)
    assert harness.state_of("b") is MemberState.DEAD
    harness.machine.receive(Gossip((Alive("b", 4, "b-new-address:7946"),)), addr("b"), 12.0)
    member = harness.machine.member("b")
    assert member is not None
    assert (member.state, member.incarnation, member.address) == (
        MemberState.ALIVE,
        4,
        "b-new-address:7946",
    )
    assert harness.kinds("b")[-2:] == [EventKind.DEAD, EventKind.JOINED]


def test_tombstones_are_forgotten_after_dead_node_reclaim() -> None:
    harness = Harness(["b", "c"])
    harness.machine.receive(Gossip((Dead("b", 0, "c"),)), addr("c"), 10.0)
    harness.machine.tick(10.0 + CONFIG.dead_node_reclaim - 0.1)
    assert harness.machine.member("b") is not None
    harness.machine.tick(10.0 + CONFIG.dead_node_reclaim)
    assert harness.machine.member("b") is None
    assert harness.kinds("b")[-1] is EventKind.FORGOTTEN


def test_a_leave_is_recorded_as_left_not_dead() -> None:
    harness = Harness(["b", "c"])
    harness.machine.receive(Gossip((Leave("b", 0),)), addr("b"), 10.0)
    assert harness.state_of("b") is MemberState.LEFT
    harness.machine.receive(Gossip((Dead("b", 0, "c"),)), addr("c"), 11.0)
    assert harness.state_of("b") is MemberState.LEFT
    assert harness.kinds("b") == [EventKind.LEFT]


def test_leaving_stops_probing_and_sends_the_goodbye_at_once() -> None:
    harness = Harness(["b", "c", "d"])
    out = harness.machine.leave(5.0)
    assert out
    assert all(o.message == Gossip((Leave("me", 0),)) for o in out)
    assert harness.machine.local.state is MemberState.LEFT
    assert harness.machine.pending_broadcasts == 1
    assert not messages_of(harness.run_until(100.0), Ping)
    assert harness.machine.pending_broadcasts == 0
    # A leaving node does not refute what is said about it.
    harness.machine.receive(Gossip((Dead("me", 0, "b"),)), addr("b"), 50.0)
    assert harness.machine.incarnation == 0


def test_a_restarted_node_outbids_its_previous_life_learned_from_the_seed() -> None:
    harness = Harness([])
    (request,) = harness.machine.join([addr("seed")], 0.0)
    assert isinstance(request.message, PushPullRequest)
    assert request.message.join
    assert "me" not in {entry.name for entry in request.message.digest}
    assert [s.name for s in request.message.states] == ["me"]
    previous_life = full_state(Member("me", addr("me"), 7, MemberState.DEAD, 0.0))
    seed = full_state(peer("seed"))
    out = harness.machine.receive(PushPullResponse((previous_life, seed)), addr("seed"), 0.01)
    assert harness.machine.incarnation == 8
    assert harness.machine.joined
    assert Outgoing(addr("seed"), Gossip((Alive("me", 8, addr("me")),))) in out
    assert harness.state_of("seed") is MemberState.ALIVE


def test_a_restarted_node_with_new_metadata_replaces_its_old_record() -> None:
    harness = Harness([], meta=b"new inventory")
    harness.machine.join([addr("seed")], 0.0)
    old = full_state(Member("me", addr("me"), 0, MemberState.ALIVE, 0.0, b"old inventory"))
    harness.machine.receive(PushPullResponse((old,)), addr("seed"), 0.01)
    assert harness.machine.incarnation == 1


def test_join_is_retried_until_a_seed_answers() -> None:
    harness = Harness([])
    harness.machine.join([addr("seed")], 0.0)
    retry = harness.machine.tick(CONFIG.join_retry_interval)
    assert [o.destination for o in messages_of(retry, PushPullRequest)] == [addr("seed")]
    harness.machine.receive(PushPullResponse(()), addr("seed"), 1.5)
    assert harness.machine.joined
    assert not messages_of(harness.machine.tick(10.0), PushPullRequest)


def test_joining_without_seeds_starts_a_cluster() -> None:
    harness = Harness([])
    assert harness.machine.join([], 0.0) == []
    assert harness.machine.joined


# --- metadata ---------------------------------------------------------------------------


def test_the_owners_newest_metadata_version_wins() -> None:
    harness = Harness(["b"])
    harness.machine.receive(Gossip((Alive("b", 0, addr("b"), b"v2", 2),)), addr("b"), 1.0)
    harness.machine.receive(Gossip((Alive("b", 0, addr("b"), b"v1", 1),)), addr("b"), 2.0)
    member = harness.machine.member("b")
    assert member is not None
    assert (member.meta, member.meta_version) == (b"v2", 2)
    assert harness.kinds("b") == [EventKind.META_UPDATED]


def test_a_higher_incarnation_carries_newer_metadata_even_with_a_lower_version() -> None:
    harness = Harness(["b"])
    harness.machine.receive(Gossip((Alive("b", 0, addr("b"), b"old life", 9),)), addr("b"), 1.0)
    harness.machine.receive(Gossip((Alive("b", 1, addr("b"), b"new life", 0),)), addr("b"), 2.0)
    member = harness.machine.member("b")
    assert member is not None
    assert member.meta == b"new life"


def test_metadata_of_a_suspect_updates_without_clearing_the_suspicion() -> None:
    harness = Harness(["b", "c"])
    harness.machine.receive(Gossip((Suspect("b", 0, "c"),)), addr("c"), 1.0)
    harness.machine.receive(Gossip((Alive("b", 0, addr("b"), b"load=3", 1),)), addr("b"), 2.0)
    member = harness.machine.member("b")
    assert member is not None
    assert (member.state, member.meta) == (MemberState.SUSPECT, b"load=3")


def test_urgent_local_metadata_raises_its_version_and_is_gossiped() -> None:
    harness = Harness(["b"])
    harness.machine.update_local_meta(b"gpus=8", 1.0, urgent=True)
    assert (harness.machine.local.meta, harness.machine.local.meta_version) == (b"gpus=8", 1)
    gossip = messages_of(harness.machine.tick(harness.machine.next_deadline()), Gossip)
    assert Alive("me", 0, addr("me"), b"gpus=8", 1) in gossip[0].message.updates  # type: ignore[union-attr]


def test_quiet_local_metadata_rides_on_probes_only() -> None:
    harness = Harness(["b", "c"])
    harness.run_until(1.0)  # the start-up announcement is gossiped out
    assert harness.machine.pending_broadcasts == 0
    assert not harness.machine.update_local_meta(b"load=7", 1.0), "no eager push"
    news = Alive("me", 0, addr("me"), b"load=7", 1)
    now, ping = harness.tick_until_probe()
    assert news in ping.message.updates  # type: ignore[union-attr]
    # An ack carries it too.
    acks = messages_of(harness.machine.receive(Ping(9, "me"), addr("c"), now), Ack)
    assert news in acks[0].message.updates  # type: ignore[union-attr]
    # No gossip round carries it (peers that never answer are gossiped about, though).
    harness.now = now
    rounds = messages_of(harness.run_until(now + 3.0), Gossip)
    assert all(news not in item.message.updates for item in rounds)  # type: ignore[union-attr]


def test_a_peers_metadata_only_news_is_relayed_quietly_but_a_state_change_at_once() -> None:
    harness = Harness(["b", "c"], config=dataclasses.replace(CONFIG, eager_push=True))
    drive(harness, 5.0)  # b and c answer our probes
    out = harness.machine.receive(Gossip((Alive("b", 0, addr("b"), b"load=3", 1),)), addr("b"), 5.1)
    assert not messages_of(out, Gossip)
    assert harness.machine.pending_broadcasts == 0
    out = harness.machine.receive(Gossip((Alive("b", 1, addr("b"), b"load=3", 1),)), addr("b"), 5.2)
    assert messages_of(out, Gossip), "a new incarnation is news to push"


def test_quiet_metadata_can_be_turned_off() -> None:
    harness = Harness(["b"], config=dataclasses.replace(CONFIG, quiet_metadata=False))
    harness.machine.update_local_meta(b"gpus=8", 1.0)
    gossip = messages_of(harness.machine.tick(harness.machine.next_deadline()), Gossip)
    assert Alive("me", 0, addr("me"), b"gpus=8", 1) in gossip[0].message.updates  # type: ignore[union-attr]


def test_our_own_older_announcement_echoed_back_is_not_a_conflict() -> None:
    harness = Harness(["b"])
    harness.machine.update_local_meta(b"one", 1.0)
    harness.machine.update_local_meta(b"two", 1.1)
    harness.machine.receive(Gossip((Alive("me", 0, addr("me"), b"one", 1),)), addr("b"), 2.0)
    assert harness.machine.incarnation == 0


# --- push-pull ----------------------------------------------------------------------------


def test_push_pull_sends_only_what_the_other_side_lacks_and_asks_for_the_rest() -> None:
    harness = Harness(["b", "c"])
    harness.machine.receive(Gossip((Alive("c", 2, addr("c")),)), addr("c"), 1.0)
    digest_of_other = (
        full_state(peer("b")),  # same as ours
        full_state(peer("c")),  # older than ours
        full_state(peer("x")),  # unknown to us
    )
    from murmur.node.gossip.pushpull import digest_entry

    request = PushPullRequest(
        tuple(
            digest_entry(Member(s.name, s.address, s.incarnation, s.state, 0.0))
            for s in digest_of_other
        )
    )
    (reply,) = harness.machine.receive(request, addr("b"), 2.0)
    assert isinstance(reply.message, PushPullResponse)
    assert sorted(s.name for s in reply.message.states) == ["c", "me"]
    assert reply.message.wanted == ("x",)


def test_push_pull_states_are_merged_and_a_remote_death_is_only_a_suspicion_here() -> None:
    harness = Harness(["b"])
    states = (
        full_state(peer("new")),
        full_state(Member("b", addr("b"), 0, MemberState.DEAD, 0.0)),
    )
    harness.machine.receive(PushPullStates(states), addr("x"), 1.0)
    assert harness.state_of("new") is MemberState.ALIVE
    assert harness.state_of("b") is MemberState.SUSPECT


def test_without_a_listener_events_queue_up_until_drained() -> None:
    machine = Membership("me", addr("me"), config=CONFIG, rng=random.Random(1), now=0.0)
    machine.receive(Gossip((Alive("b", 0, addr("b")),)), addr("b"), 1.0)
    assert [e.kind for e in machine.drain_events()] == [EventKind.JOINED]
    assert machine.drain_events() == []


def test_members_lists_everyone_known_by_name() -> None:
    harness = Harness(["c", "b"])
    harness.machine.receive(Gossip((Dead("c", 0, "b"),)), addr("b"), 1.0)
    assert [m.name for m in harness.machine.members()] == ["b", "c", "me"]
    alive = harness.machine.members([MemberState.ALIVE])
    assert [m.name for m in alive] == ["b", "me"]
    assert harness.machine.cluster_size() == 2


# --- refused connections ----------------------------------------------------------------


def test_a_refused_connection_suspects_at_once_with_a_short_timeout() -> None:
    harness = Harness(list("bcdefg"))
    harness.machine.report_refused(addr("b"), 10.0)
    assert harness.state_of("b") is MemberState.SUSPECT
    harness.run_until(10.0 + CONFIG.refused_suspicion_timeout - 0.01)
    assert harness.state_of("b") is MemberState.SUSPECT
    harness.run_until(10.0 + CONFIG.refused_suspicion_timeout)
    assert harness.state_of("b") is MemberState.DEAD


def test_a_refused_member_that_comes_back_in_time_refutes() -> None:
    harness = Harness(list("bcdefg"))
    harness.machine.report_refused(addr("b"), 10.0)
    harness.machine.receive(Gossip((Alive("b", 1, addr("b")),)), addr("b"), 10.5)
    harness.run_until(20.0)
    assert EventKind.DEAD not in harness.kinds("b")


def test_refusals_from_unknown_addresses_or_when_turned_off_change_nothing() -> None:
    harness = Harness(["b"])
    assert harness.machine.report_refused("nobody:1", 1.0) == []
    off = Harness(["b"], GossipConfig(refused_suspicion_timeout=0))
    off.machine.report_refused(addr("b"), 1.0)
    assert off.state_of("b") is MemberState.ALIVE
