"""The simulated network: clock, delays, loss, reordering, partitions, filters."""

from __future__ import annotations

import random
from collections.abc import Callable

from murmur.node.gossip import EventKind, LinkModel, Message, Nack, SimulatedNetwork, Simulation
from murmur.node.gossip.simulation import node_name


def network(
    link: LinkModel | None = None,
) -> tuple[SimulatedNetwork, list[tuple[float, str, Message]]]:
    net = SimulatedNetwork(rng=random.Random(1), default_link=link or LinkModel())
    received: list[tuple[float, str, Message]] = []

    def receiver(address: str) -> Callable[[Message, str], None]:
        return lambda message, sender: received.append((net.now, address, message))

    for address in ("a", "b", "c"):
        net.attach(address, receiver(address))
    return net, received


def test_the_clock_runs_events_in_time_order_and_ties_in_scheduling_order() -> None:
    net, _ = network()
    order: list[str] = []
    net.schedule(2.0, lambda: order.append("late"))
    net.schedule(1.0, lambda: order.append("first"))
    net.schedule(1.0, lambda: order.append("second"))
    net.run_until(1.5)
    assert order == ["first", "second"]
    assert net.now == 1.5
    net.run_until(3.0)
    assert order == ["first", "second", "late"]


def test_messages_arrive_after_the_link_delay() -> None:
    net, received = network(LinkModel(base_delay=0.01, jitter=0.0))
    net.send("a", "b", Nack(1))
    net.run_until(0.009)
    assert received == []
    net.run_until(0.02)
    assert received == [(0.01, "b", Nack(1))]


def test_jitter_reorders_messages() -> None:
    net, received = network(LinkModel(base_delay=0.001, jitter=0.001))
    for seq in range(50):
        net.send("a", "b", Nack(seq))
    net.run_until(1)
    seqs = [m.seq for _, _, m in received]  # type: ignore[union-attr]
    assert sorted(seqs) == list(range(50))
    assert seqs != sorted(seqs)


def test_loss_rate_drops_about_that_share() -> None:
    net, received = network(LinkModel(loss_rate=0.2))
    for seq in range(2000):
        net.send("a", "b", Nack(seq))
    net.run_until(1)
    assert 1500 < len(received) < 1700


def test_partitions_cut_messages_in_flight_and_heal() -> None:
    net, received = network(LinkModel(base_delay=0.01, jitter=0.0))
    net.send("a", "b", Nack(1))
    net.partition([{"a"}, {"b", "c"}])
    net.send("b", "c", Nack(2))
    net.run_until(1)
    assert [m for _, _, m in received] == [Nack(2)]
    assert not net.can_talk("a", "b")
    net.heal()
    net.send("a", "b", Nack(3))
    net.run_until(2)
    assert received[-1][2] == Nack(3)


def test_an_address_in_no_group_talks_to_no_one() -> None:
    net, _ = network()
    net.partition([{"a", "b"}])
    assert not net.can_talk("a", "c")
    assert not net.can_talk("c", "c")


def test_per_link_models_and_filters() -> None:
    net, received = network(LinkModel(base_delay=0.001, jitter=0.0))
    net.set_link("a", "b", LinkModel(loss_rate=1.0))
    net.add_filter(lambda source, destination, message: destination == "c")
    net.send("a", "b", Nack(1))
    net.send("b", "c", Nack(2))
    net.send("b", "a", Nack(3))
    net.run_until(1)
    assert [m for _, _, m in received] == [Nack(3)]
    net.clear_filters()
    net.send("b", "c", Nack(4))
    net.run_until(2)
    assert received[-1][2] == Nack(4)


def test_a_stalled_node_handles_its_backlog_late_when_it_resumes() -> None:
    sim = Simulation(10, seed=1)
    sim.run_until(2)
    stalled = node_name(3)
    sim.stall(stalled, 4.0)
    sim.run_until(2.5)
    newcomer = sim.add_node()
    sim.run_until(5.9)
    assert newcomer not in sim.view(stalled)
    sim.run_until(6.5)
    learned = [
        o.at
        for o in sim.observations
        if o.observer == stalled and o.subject == newcomer and o.kind is EventKind.JOINED
    ]
    assert learned
    assert learned[0] >= 6.0
