"""Who leads, in which term, with which voters: as this node can best tell.

A voter (or a learner) hears the leader itself, so its own Raft view answers. A
node outside the voter set hears no heartbeats; it reads what every node gossips
about itself (``NodeInfo.voter``, ``leader``, ``term``) and takes the live node
that claims to lead in the highest term. Either way the answer can lag a failover
by a gossip round; it is for display and for finding where to forward a write,
and a forward to a deposed leader is refused there and retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from node.cluster_view import DOWN_STATES
from node.consensus.runner import ConsensusStatus
from proto.murmur.v1 import types_pb2


@dataclass(frozen=True, slots=True)
class Leadership:
    leader: str
    """The leader's name; empty when none is known."""
    term: int
    voters: tuple[str, ...]
    leader_address: str
    """Where the leader's API listens; empty when unknown."""


def raft_leadership(
    local: ConsensusStatus | None, address_of: Callable[[str], str]
) -> Leadership | None:
    """The leadership as this node's own Raft knows it (a voter or learner that
    hears a leader); ``None`` when it does not. Needs only the leader's address:
    cheap enough for every forwarded write."""
    if local is None or not local.voters or local.leader is None:
        return None
    return Leadership(
        leader=local.leader,
        term=local.term,
        voters=tuple(sorted(local.voters)),
        leader_address=address_of(local.leader),
    )


def known_leadership(
    local: ConsensusStatus | None, nodes: Iterable[types_pb2.NodeInfo]
) -> Leadership:
    """The leadership as ``local`` Raft state and gossiped ``nodes`` tell it."""
    up = [node for node in nodes if node.state not in DOWN_STATES]
    addresses = {node.name: node.address for node in up}
    own = raft_leadership(local, lambda name: addresses.get(name, ""))
    if own is not None:
        return own
    claims = sorted((node.term, node.name) for node in up if node.leader)
    voters = tuple(sorted(node.name for node in up if node.voter))
    term = max((node.term for node in up), default=local.term if local else 0)
    if not claims:
        return Leadership(leader="", term=term, voters=voters, leader_address="")
    claim_term, leader = claims[-1]
    return Leadership(
        leader=leader, term=max(term, claim_term), voters=voters, leader_address=addresses[leader]
    )
