"""What one node believes about one member of the cluster."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MemberState(enum.Enum):
    """Where a member stands in SWIM's life cycle.

    ALIVE → SUSPECT when a probe fails; SUSPECT → ALIVE when the member refutes
    with a higher incarnation; SUSPECT → DEAD when the suspicion times out;
    any → LEFT when the member says goodbye. DEAD and LEFT members are kept as
    tombstones for ``dead_node_reclaim`` seconds, then forgotten.
    """

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"

    @property
    def is_live(self) -> bool:
        """Alive or suspect: still probed, still counted in the cluster size."""
        return self in (MemberState.ALIVE, MemberState.SUSPECT)


SEVERITY: dict[MemberState, int] = {
    MemberState.ALIVE: 0,
    MemberState.SUSPECT: 1,
    MemberState.DEAD: 2,
    MemberState.LEFT: 3,
}
"""At equal incarnation the more severe state wins (memberlist's rule): news of a
suspicion or death overrides an Alive of the same incarnation, and only the member
itself can override them, by raising its incarnation. Left outranks dead: a member
declared dead that then says goodbye is gone on purpose."""


@dataclass(frozen=True, slots=True)
class Member:
    """One member as seen locally. Immutable: a change makes a new record.

    ``meta`` is an opaque blob owned by the member (address, labels, GPU inventory,
    load...; the daemon serialises it). ``address`` and ``meta`` arrive together in
    the member's own Alive messages and are ordered by ``(meta_incarnation,
    meta_version)``: the incarnation of the Alive that carried them, then the
    version the owner raises on each change. ``meta_incarnation`` can lag behind
    ``incarnation`` when a suspicion about a newer incarnation arrived before that
    incarnation's Alive. A restarted member's first blobs are ignored until it has
    raised its incarnation above its previous life's.
    """

    name: str
    address: str
    incarnation: int
    state: MemberState
    state_changed_at: float
    meta: bytes = b""
    meta_version: int = 0
    meta_incarnation: int = 0
