"""Fan-out of live updates to any number of watchers (the Watch... streams).

Each subscriber gets its own bounded queue. A slow watcher must never slow the
node or grow its memory without bound, so when its queue is full the oldest
update is dropped: watchers receive state snapshots, where the newest wins.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class Broadcaster(Generic[T]):
    """Publishes values to every current subscriber without ever blocking."""

    def __init__(self, *, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[T]] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, value: T) -> None:
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(value)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[T]]:
        """A queue receiving every value published while the context is open."""
        queue: asyncio.Queue[T] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
