"""Membership changes the daemon reacts to (start watching a node, drop its jobs...)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from murmur.node.gossip.member import Member


class EventKind(enum.Enum):
    """What changed about a member."""

    JOINED = "joined"
    """First heard of, or back from dead/left with a higher incarnation."""
    SUSPECT = "suspect"
    """A probe of it failed; it has until the suspicion times out to refute."""
    ALIVE = "alive"
    """It refuted a suspicion (it is alive again, at a higher incarnation)."""
    DEAD = "dead"
    """Its suspicion timed out: presumed crashed or cut off."""
    LEFT = "left"
    """It left on purpose."""
    META_UPDATED = "meta_updated"
    """Its metadata blob changed (a newer version from its owner)."""
    FORGOTTEN = "forgotten"
    """Its dead or left tombstone expired and the record was dropped."""


@dataclass(frozen=True, slots=True)
class MembershipEvent:
    """``member`` is the record just after the change, seen at time ``at``."""

    kind: EventKind
    member: Member
    at: float
