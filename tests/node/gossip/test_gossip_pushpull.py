"""Which states a push-pull exchange sends."""

from __future__ import annotations

import pytest

from murmur.node.gossip import Member, MemberState
from murmur.node.gossip.pushpull import digest_entry, is_news, plan_response

ALIVE, SUSPECT, DEAD, LEFT = (
    MemberState.ALIVE,
    MemberState.SUSPECT,
    MemberState.DEAD,
    MemberState.LEFT,
)


def member(
    incarnation: int, state: MemberState, meta_version: int = 0, meta_incarnation: int | None = None
) -> Member:
    return Member(
        "x",
        "x:1",
        incarnation,
        state,
        0.0,
        b"",
        meta_version,
        incarnation if meta_incarnation is None else meta_incarnation,
    )


@pytest.mark.parametrize(
    ("remote", "local", "news"),
    [
        (member(2, ALIVE), member(1, DEAD), True),  # a new life
        (member(1, ALIVE), member(1, DEAD), False),  # a tombstone holds
        (member(1, SUSPECT), member(1, ALIVE), True),  # suspicion beats alive
        (member(1, ALIVE), member(1, SUSPECT), False),
        (member(1, DEAD), member(1, SUSPECT), True),
        (member(1, LEFT), member(1, DEAD), True),
        (member(1, DEAD), member(1, LEFT), False),
        (member(1, ALIVE, 5), member(1, ALIVE, 4), True),  # newer metadata
        (member(1, ALIVE, 4), member(1, ALIVE, 4), False),
        (member(1, ALIVE, 9), member(1, DEAD, 4), False),  # no metadata for the dead
        (member(0, ALIVE, 3), member(1, SUSPECT, 2, 0), True),  # metadata of an older Alive
        (member(1, DEAD), None, True),  # the requester did not know it
    ],
)
def test_is_news(remote: Member, local: Member | None, news: bool) -> None:
    assert is_news(remote, local) is news
    assert is_news(digest_entry(remote), None if local is None else digest_entry(local)) is news


def test_plan_response_sends_newer_and_asks_for_older() -> None:
    ours = [
        Member("same", "s:1", 1, ALIVE, 0.0),
        Member("ours-newer", "o:1", 3, ALIVE, 0.0, meta_incarnation=3),
        Member("theirs-newer", "t:1", 1, ALIVE, 0.0, meta_incarnation=1),
        Member("only-ours", "x:1", 0, ALIVE, 0.0),
    ]
    theirs = [
        digest_entry(Member("same", "s:1", 1, ALIVE, 0.0)),
        digest_entry(Member("ours-newer", "o:1", 2, ALIVE, 0.0)),
        digest_entry(Member("theirs-newer", "t:1", 1, DEAD, 0.0)),
        digest_entry(Member("only-theirs", "y:1", 0, ALIVE, 0.0)),
    ]
    states, wanted = plan_response(ours, theirs)
    assert [s.name for s in states] == ["ours-newer", "only-ours"]
    assert wanted == ("theirs-newer", "only-theirs")
