"""Who leads, in which term, with which voters: as this node can best tell.

The one rule: a leader is named only with the term it leads, and only while no
newer term is known (a newer term means an election: there is no leader until one
is heard).

- A voter hears the leader itself, so its own Raft answers, and nothing else: the
  leader its Raft follows in its current term, or none (Raft forgets the leader
  whenever its term moves on), and the voter set of its log.
- A node outside the voter set may hear no heartbeats (only one learner at a time is
  replicated to), so its Raft's leader may be long stale. It weighs that leader, in
  the term it heard it, against what every node gossips about itself
  (``NodeInfo.leader``, ``term``, ``voter``): the claim of the highest term stands
  unless its claimant is held down or suspect, or a newer term is known. Its voters
  are the live nodes that say they vote.

Either way the answer can lag a failover by a gossip round (a non-voter) or an
election timeout (a voter); it is for display and for finding where to forward a
write, and a forward to a deposed leader is refused there and retried.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from murmur.node.local_node import ElectionFacts
from murmur.v1 import types_pb2

DOWN_STATES = (types_pb2.NODE_STATE_DEAD, types_pb2.NODE_STATE_LEFT)
"""Node states of a member that is gone: its GPUs and datasets count for nothing,
and it leads nothing."""

_NOT_LEADING = (*DOWN_STATES, types_pb2.NODE_STATE_SUSPECT)
"""States in which a node's word that it leads is not taken: its last word before
it died, or one gossip cannot confirm now."""


@dataclass(frozen=True, slots=True)
class Leadership:
    leader: str
    """The leader's name; empty when none is known."""
    term: int
    """The term ``leader`` leads; with no leader, the newest term this node knows."""
    voters: tuple[str, ...]
    leader_address: str
    """Where the leader's API listens; empty when unknown."""


def raft_leadership(
    local: ElectionFacts | None, address_of: Callable[[str], str]
) -> Leadership | None:
    """The leadership as a voter's own Raft knows it; ``None`` when this node is not
    a voter (it may not hear the leader: see :func:`known_leadership`). Needs only
    the leader's address: cheap enough for every forwarded write."""
    if local is None or local.name not in local.voters:
        return None
    voters = tuple(sorted(local.voters))
    if local.leader is None:
        return Leadership(leader="", term=local.term, voters=voters, leader_address="")
    return Leadership(
        leader=local.leader,
        term=local.term,
        voters=voters,
        leader_address=address_of(local.leader),
    )


def known_leadership(
    local: ElectionFacts | None, nodes: Iterable[types_pb2.NodeInfo]
) -> Leadership:
    """The leadership as ``local`` Raft state and gossiped ``nodes`` tell it."""
    nodes = list(nodes)
    up = [node for node in nodes if node.state not in DOWN_STATES]
    addresses = {node.name: node.address for node in up}
    own = raft_leadership(local, lambda name: addresses.get(name, ""))
    if own is not None:
        return own
    voters = tuple(sorted(node.name for node in up if node.voter))
    not_leading = {node.name for node in nodes if node.state in _NOT_LEADING}
    claims = [(node.term, node.name) for node in up if node.leader]
    if local is not None and local.leader is not None:
        claims.append((local.term, local.leader))  # heard as a learner, maybe long ago
    standing = [claim for claim in claims if claim[1] not in not_leading]
    newest = max([local.term if local is not None else 0, *(node.term for node in up)])
    claim_term, leader = max(standing, default=(0, ""))
    if not leader or claim_term < newest:
        # No claim, or the newest term has no leader this node heard of: an election.
        return Leadership(leader="", term=newest, voters=voters, leader_address="")
    return Leadership(
        leader=leader, term=claim_term, voters=voters, leader_address=addresses.get(leader, "")
    )


def mark_roles(nodes: Iterable[types_pb2.NodeInfo], leadership: Leadership) -> None:
    """Set every node's ``voter`` and ``leader`` flags from ``leadership`` (in place),
    so that a listing says what a status says: a node's own gossiped flags are its
    last word, stale once it died or was removed. The leader's ``term`` is raised to
    the term it leads, which it has seen (its gossip may lag its election)."""
    voters = set(leadership.voters)
    for node in nodes:
        node.voter = node.name in voters
        node.leader = bool(leadership.leader) and node.name == leadership.leader
        if node.leader and node.term < leadership.term:
            node.term = leadership.term
