"""Gossip membership over real gRPC and mutual TLS: several runners in one process,
each behind its own server on a 127.0.0.x address.

Bounds on waits are generous (seconds where the protocol needs a fraction): they
check that something happens, not how fast.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from murmur.certs import CertificateAuthority, IdentityBundle, Role
from murmur.node.gossip import EventKind, MemberState, Ping, encode
from murmur.node.membership import MembershipChange, SendOutcome
from murmur.v1 import types_pb2
from tests.node.membership.gossip_cluster import FAST, GossipLab, GossipNode, eventually

ALIVE = MemberState.ALIVE


def all_see(nodes: list[GossipNode], name: str, state: MemberState) -> bool:
    return all(node.states().get(name) is state for node in nodes)


async def test_five_nodes_converge_and_see_each_others_node_info(gossip_lab: GossipLab) -> None:
    first = await gossip_lab.start("node-1", "127.0.0.2", seeds=[])
    changes: list[MembershipChange] = []

    async def watch() -> None:
        async with first.runner.subscribe() as stream:
            async for change in stream:
                changes.append(change)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)  # let the watcher subscribe before anyone joins
    others = [
        await gossip_lab.start(f"node-{i}", f"127.0.0.{i + 1}", seeds=[first.address])
        for i in range(2, 6)
    ]
    nodes = [first, *others]
    async with asyncio.timeout(15):
        await asyncio.gather(*(node.runner.join() for node in nodes))

    names = {node.name for node in nodes}
    await eventually(
        lambda: all(node.states() == dict.fromkeys(names, ALIVE) for node in nodes),
        what="every node seeing five alive members",
    )
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)

    for node in nodes:
        for member in node.runner.members():
            assert member.info is not None, f"{node.name} has no NodeInfo for {member.name}"
            peer = next(n for n in nodes if n.name == member.name)
            assert member.info.name == member.name
            assert member.info.address == member.address == peer.address
            assert member.info.labels["host"] == peer.address.split(":")[0]
            assert [d.name for d in member.info.datasets] == [f"{member.name}-data"]
            assert member.info.state == types_pb2.NODE_STATE_ALIVE
    joined = {c.member.name for c in changes if c.kind is EventKind.JOINED}
    assert joined == names - {"node-1"}
    assert all(c.member.info is not None for c in changes if c.kind is EventKind.JOINED), (
        "JOINED changes carry the member's NodeInfo"
    )


async def test_a_crashed_node_is_declared_dead_because_its_port_refuses(
    gossip_lab: GossipLab,
) -> None:
    # Suspicion alone would take at least 20 s here (suspicion_min_mult * probe_interval);
    # only a refused connection (report_refused) can declare the crash sooner.
    gossip_lab.config = dataclasses.replace(FAST, suspicion_mult=100, suspicion_min_mult=100)
    nodes = await gossip_lab.start_joined(4)
    survivors, victim = nodes[:3], nodes[3]
    await eventually(
        lambda: all(len(n.runner.members([ALIVE])) == 4 for n in nodes), what="convergence"
    )

    await victim.crash()

    await eventually(
        lambda: all_see(survivors, victim.name, MemberState.DEAD),
        within=10,
        what="the survivors declaring the crashed node dead",
    )
    assert sum(n.runner.stats.sends_refused for n in survivors) > 0
    others = {n.name for n in survivors}
    # A survivor may be suspected for a moment (a probe routed through the victim as
    # it died), but none is declared dead, and all see each other alive again.
    for node in survivors:
        dead = {m.name for m in node.runner.members([MemberState.DEAD])}
        assert dead == {victim.name}, f"{node.name} holds {dead} dead"
    await eventually(
        lambda: all({m.name for m in n.runner.members([ALIVE])} == others for n in survivors),
        within=10,
        what="the survivors seeing each other alive",
    )


async def test_a_node_that_leaves_is_recorded_as_left_not_dead(gossip_lab: GossipLab) -> None:
    nodes = await gossip_lab.start_joined(4)
    stayers, leaver = nodes[:3], nodes[3]
    await eventually(
        lambda: all(len(n.runner.members([ALIVE])) == 4 for n in nodes), what="convergence"
    )

    assert await leaver.runner.leave(timeout=5)
    await leaver.crash()  # after a goodbye, the port closing must not turn LEFT into DEAD

    await eventually(
        lambda: all_see(stayers, leaver.name, MemberState.LEFT), what="the leave reaching all"
    )
    await asyncio.sleep(10 * FAST.probe_interval)
    assert all_see(stayers, leaver.name, MemberState.LEFT)
    for node in stayers:
        member = node.runner.member(leaver.name)
        assert member is not None
        assert member.info is not None
        assert member.info.state == types_pb2.NODE_STATE_LEFT


async def test_a_metadata_change_reaches_every_node(gossip_lab: GossipLab) -> None:
    nodes = await gossip_lab.start_joined(4)
    changed = nodes[2]

    def label_everywhere(value: str) -> bool:
        for node in nodes:
            member = node.runner.member(changed.name)
            if member is None or member.info is None or member.info.labels["zone"] != value:
                return False
        return True

    changed.info.labels["zone"] = "b"
    changed.runner.request_meta_refresh()
    await eventually(lambda: label_everywhere("b"), what="the new label reaching everyone")
    changed.info.labels["zone"] = "c"
    await eventually(lambda: label_everywhere("c"), what="the second change reaching everyone")
    assert changed.runner.stats.meta_published >= 2


async def test_an_urgent_change_does_not_wait_for_the_regular_refresh(
    gossip_lab: GossipLab,
) -> None:
    """A drain or a change of GPU use asks for a refresh: it goes out within
    URGENT_META_SPACING_SECONDS, not at the next regular read (a minute here)."""
    first = await gossip_lab.start("node-1", "127.0.0.2", seeds=[])
    slow = await gossip_lab.start(
        "node-2", "127.0.0.3", seeds=[first.address], meta_refresh_interval=60.0
    )
    async with asyncio.timeout(15):
        await asyncio.gather(first.runner.join(), slow.runner.join())
    await eventually(lambda: first.runner.member(slow.name) is not None, what="the join")
    slow.info.labels["zone"] = "drained"
    slow.runner.request_meta_refresh()

    def seen() -> bool:
        member = first.runner.member(slow.name)
        return (
            member is not None
            and member.info is not None
            and (member.info.labels["zone"] == "drained")
        )

    await eventually(seen, what="the urgent change reaching node-1", within=10)


async def test_a_node_from_another_ca_cannot_deliver_gossip(
    gossip_lab: GossipLab, lab_ca: CertificateAuthority, tmp_path: Path
) -> None:
    nodes = await gossip_lab.start_joined(2)
    other_ca = CertificateAuthority.create(tmp_path / "other-ca")
    foreign = other_ca.issue(
        name="stranger", role=Role.NODE, validity_days=30, node_addresses=["127.0.0.9"]
    )
    # It even trusts the lab CA, so only the lab nodes' own check can stop it.
    stranger_bundle = IdentityBundle(
        key_pem=foreign.key_pem,
        certificate_pem=foreign.certificate_pem,
        ca_certificate_pem=lab_ca.certificate_pem,
    )
    stranger = await gossip_lab.start(
        "stranger", "127.0.0.9", seeds=[n.address for n in nodes], bundle=stranger_bundle
    )
    joining = asyncio.create_task(stranger.runner.join())

    await eventually(
        lambda: stranger.runner.stats.sends_failed >= 6, what="the stranger's joins failing"
    )
    stats = stranger.runner.stats
    assert stats.messages_sent == 0
    assert stats.sends_refused == 0, "a refused handshake is not a refused connection"
    assert not joining.done()
    assert not stranger.runner.joined
    for node in nodes:
        assert "stranger" not in node.states()
        assert node.servicer.calls == node.runner.stats.messages_received
    joining.cancel()
    await asyncio.gather(joining, return_exceptions=True)


async def test_garbage_over_the_wire_is_dropped_and_the_call_still_succeeds(
    gossip_lab: GossipLab,
) -> None:
    nodes = await gossip_lab.start_joined(2)
    target, sender = nodes
    before = target.runner.stats.messages_dropped

    outcome = await sender.transport.send(
        target.address, b"\x01\xffnot gossip", from_address=sender.address, timeout=2
    )

    assert outcome is SendOutcome.OK
    assert target.runner.stats.messages_dropped == before + 1
    # Both still members and not dead; with 0.1 s probe timeouts a loaded machine may
    # briefly make one suspect the other.
    assert target.states().keys() == {"node-1", "node-2"}
    assert MemberState.DEAD not in target.states().values()


async def test_a_message_for_a_stopped_runner_is_handled_and_its_reply_dropped(
    gossip_lab: GossipLab,
) -> None:
    node = await gossip_lab.start("node-1", "127.0.0.2", seeds=[])
    node.task.cancel()
    await asyncio.gather(node.task, return_exceptions=True)
    dropped = node.runner.stats.sends_dropped

    ping = encode(Ping(seq=7, target="node-1", updates=()))
    outcome = await node.transport.send(node.address, ping, from_address="127.0.0.3:1", timeout=2)

    assert outcome is SendOutcome.OK
    assert node.runner.stats.messages_received == 1
    assert node.runner.stats.sends_dropped == dropped + 1, "the Ack had nobody to carry it"
