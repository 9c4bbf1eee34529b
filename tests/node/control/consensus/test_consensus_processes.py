"""Raft in real daemons: separate ``murmur node`` processes on 127.0.0.x over mTLS.

The voter stabilization time is cut to 1 s so that the voter set grows within a
test's patience; election timings are the production ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from murmur.v1 import cluster_pb2
from tests.support.cluster import eventually, node_states, start_cluster, state_name, status_of
from tests.support.nodes import Lab, NodeProcess

FAST_VOTERS = {"MURMUR_NODE_VOTER_STABILIZATION_SECONDS": "1"}


async def statuses(
    nodes: Sequence[NodeProcess], lab: Lab
) -> list[cluster_pb2.ClusterStatus | None]:
    return [await status_of(node, lab) for node in nodes]


def agreed(
    seen: Sequence[cluster_pb2.ClusterStatus | None], voters: int, not_leader: str = ""
) -> tuple[str, int] | None:
    """(leader, term) when every node names the same leader (not ``not_leader``)
    and ``voters`` voters."""
    if any(status is None for status in seen):
        return None
    claims = {(s.leader, s.term, tuple(s.voters)) for s in seen if s is not None}
    if len(claims) != 1:
        return None
    leader, term, voter_names = claims.pop()
    if not leader or leader == not_leader or len(voter_names) != voters:
        return None
    return leader, term


async def wait_agreed(
    nodes: Sequence[NodeProcess],
    lab: Lab,
    voters: int,
    within: float = 45.0,
    not_leader: str = "",
) -> tuple[str, int]:
    seen = await eventually(
        lambda: statuses(nodes, lab),
        lambda s: agreed(s, voters, not_leader) is not None,
        within=within,
        what=f"all nodes agree on a leader and {voters} voters",
    )
    result = agreed(seen, voters, not_leader)
    assert result is not None
    return result


async def test_a_lone_node_leads_itself(lab: Lab) -> None:
    (node,) = start_cluster(lab, 1)
    leader, term = await wait_agreed([node], lab, voters=1, within=15)
    assert leader == "node-1"
    assert term >= 1
    shown = lab.murmur("status", "--node", node.address)
    assert shown.returncode == 0, shown.stderr
    assert f"leader node-1 (term {term}), voters: node-1" in shown.stdout


async def test_three_nodes_grow_to_three_voters_and_survive_the_leaders_kill(lab: Lab) -> None:
    nodes = start_cluster(lab, 3, env=FAST_VOTERS)
    leader, term = await wait_agreed(nodes, lab, voters=3)

    victim = next(node for node in nodes if node.name == leader)
    victim.kill()
    survivors = [node for node in nodes if node is not victim]
    _, new_term = await wait_agreed(survivors, lab, voters=3, within=20, not_leader=leader)
    assert new_term > term

    # The old leader comes back as a follower of the new term: still a voter.
    again = [*survivors, lab.restart(victim)]
    final_leader, final_term = await wait_agreed(again, lab, voters=3, within=20)
    assert final_term >= new_term
    assert final_leader in {node.name for node in again}


async def test_a_dead_voter_is_replaced_by_a_spare_node(lab: Lab) -> None:
    nodes = start_cluster(lab, 4, env=FAST_VOTERS)
    leader, _ = await wait_agreed(nodes, lab, voters=3)
    first = await status_of(nodes[0], lab)
    assert first is not None
    spare = next(node for node in nodes if node.name not in first.voters)
    victim = next(node for node in nodes if node.name in first.voters and node.name != leader)

    victim.kill()
    survivors = [node for node in nodes if node is not victim]
    await eventually(
        lambda: statuses(survivors, lab),
        lambda seen: all(
            s is not None and sorted(s.voters) == sorted(n.name for n in survivors) for s in seen
        ),
        within=45,
        what=f"{spare.name} replaces {victim.name} among the voters",
    )


async def test_node_remove_through_a_follower_takes_a_dead_voter_out(lab: Lab) -> None:
    nodes = start_cluster(lab, 3, env=FAST_VOTERS)
    leader, _ = await wait_agreed(nodes, lab, voters=3)
    followers = [node for node in nodes if node.name != leader]
    victim, messenger = followers
    victim.kill()
    # Gossip must hold it dead before an admin may remove it.
    await eventually(
        lambda: node_states(messenger, lab.admin_identity),
        lambda seen: state_name(seen[victim.name]) == "dead",
        what=f"{victim.name} dead",
    )
    removed = lab.murmur("node", "remove", victim.name, "--node", messenger.address)
    assert removed.returncode == 0, removed.stderr
    survivors = [node for node in nodes if node is not victim]
    await wait_agreed(survivors, lab, voters=2, within=15)


async def test_a_dead_leader_is_not_listed_as_leading(lab: Lab) -> None:
    nodes = start_cluster(lab, 3, env=FAST_VOTERS)
    leader, _ = await wait_agreed(nodes, lab, voters=3)
    victim = next(node for node in nodes if node.name == leader)
    victim.kill()
    survivors = [node for node in nodes if node is not victim]
    new_leader, _ = await wait_agreed(survivors, lab, voters=3, within=20, not_leader=leader)
    listed = await eventually(
        lambda: node_states(survivors[0], lab.admin_identity),
        lambda seen: not seen[leader].leader and seen[new_leader].leader,
        within=20,
        what="only the new leader listed as leading",
    )
    assert [name for name, info in listed.items() if info.leader] == [new_leader]
