"""The transmit-limited broadcast queue."""

from __future__ import annotations

from murmur.node.gossip.broadcasts import BroadcastQueue

BIG = 10_000


def _take(
    queue: BroadcastQueue[str], *, limit: int = 3, max_bytes: int = BIG, max_items: int = 100
) -> list[str]:
    return queue.take(transmit_limit=limit, max_bytes=max_bytes, max_items=max_items)


def test_newest_first_among_equally_sent_updates() -> None:
    queue: BroadcastQueue[str] = BroadcastQueue()
    for key in ("a", "b", "c"):
        queue.enqueue(key, f"{key}1", 10)
    assert _take(queue) == ["c1", "b1", "a1"]


def test_fewer_transmissions_go_first() -> None:
    queue: BroadcastQueue[str] = BroadcastQueue()
    queue.enqueue("a", "a1", 10)
    assert _take(queue) == ["a1"]
    queue.enqueue("b", "b1", 10)
    assert _take(queue, max_items=1) == ["b1"]
    queue.enqueue("c", "c1", 10)
    assert _take(queue, max_items=2) == ["c1", "b1"]


def test_each_update_is_sent_at_most_the_limit() -> None:
    queue: BroadcastQueue[str] = BroadcastQueue()
    queue.enqueue("a", "a1", 10)
    sent = sum(len(_take(queue, limit=4)) for _ in range(10))
    assert sent == 4
    assert len(queue) == 0


def test_a_newer_update_about_a_member_replaces_the_older() -> None:
    queue: BroadcastQueue[str] = BroadcastQueue()
    queue.enqueue("a", "a-suspect", 10)
    _take(queue)
    queue.enqueue("a", "a-alive", 10)
    assert len(queue) == 1
    assert _take(queue, limit=2) == ["a-alive"]
    assert _take(queue, limit=2) == ["a-alive"]
    assert _take(queue, limit=2) == []


def test_byte_budget_skips_what_does_not_fit_and_keeps_it() -> None:
    queue: BroadcastQueue[str] = BroadcastQueue()
    queue.enqueue("small", "s", 10)
    queue.enqueue("big", "B", 100)
    assert _take(queue, max_bytes=50) == ["s"]
    assert "big" in queue
    assert _take(queue, max_bytes=150) == ["B", "s"]


def test_count_budget() -> None:
    queue: BroadcastQueue[str] = BroadcastQueue()
    for index in range(10):
        queue.enqueue(str(index), str(index), 1)
    assert len(_take(queue, max_items=4)) == 4


def test_a_shrinking_limit_drops_updates_already_sent_enough() -> None:
    queue: BroadcastQueue[str] = BroadcastQueue()
    queue.enqueue("a", "a1", 10)
    _take(queue, limit=8)
    _take(queue, limit=8)
    assert _take(queue, limit=2) == []
    assert len(queue) == 0
