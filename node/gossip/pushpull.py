"""Anti-entropy by digest: decide which full states cross the wire.

A push-pull exchange first trades digests, a few bytes per member, and then only
the states one side holds newer than the other. "Newer" follows the merge rules
of the state machine: a higher incarnation wins; at equal incarnation the more
severe state wins (alive < suspect < dead < left); metadata is ordered by the
``(meta_incarnation, meta_version)`` of the Alive that carried it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from murmur.node.gossip.member import SEVERITY, Member, MemberState
from murmur.node.gossip.messages import DigestEntry, FullState


def digest_entry(member: Member) -> DigestEntry:
    return DigestEntry(
        name=member.name,
        incarnation=member.incarnation,
        state=member.state,
        meta_version=member.meta_version,
        meta_incarnation=member.meta_incarnation,
    )


def full_state(member: Member) -> FullState:
    return FullState(
        name=member.name,
        address=member.address,
        incarnation=member.incarnation,
        state=member.state,
        meta=member.meta,
        meta_version=member.meta_version,
        meta_incarnation=member.meta_incarnation,
    )


def is_news(remote: DigestEntry | Member, local: DigestEntry | Member | None) -> bool:
    """Would the holder of ``local`` learn something from ``remote``?"""
    if local is None:
        return True
    if remote.incarnation != local.incarnation:
        if remote.incarnation > local.incarnation:
            return True
    elif SEVERITY[remote.state] > SEVERITY[local.state]:
        return True
    if local.state in (MemberState.DEAD, MemberState.LEFT) and remote.incarnation <= (
        local.incarnation
    ):
        return False
    return (remote.meta_incarnation, remote.meta_version) > (
        local.meta_incarnation,
        local.meta_version,
    )


def plan_response(
    members: Iterable[Member], their_digest: Iterable[DigestEntry]
) -> tuple[tuple[FullState, ...], tuple[str, ...]]:
    """For a push-pull request: the states of ours that are news to the requester,
    and the names whose state the requester holds newer than we do."""
    theirs: Mapping[str, DigestEntry] = {entry.name: entry for entry in their_digest}
    ours: dict[str, Member] = {}
    to_send: list[FullState] = []
    for member in members:
        ours[member.name] = member
        if is_news(member, theirs.get(member.name)):
            to_send.append(full_state(member))
    wanted = tuple(name for name, entry in theirs.items() if is_news(entry, ours.get(name)))
    return tuple(to_send), wanted
