"""The node's event log: durable in the store, live to watchers.

Writers call :meth:`EventLog.record`; readers call :meth:`EventLog.follow`,
which first replays what the store holds after ``since_id`` and then yields
live events. The subscription opens before the replay, and ids already
replayed are skipped, so a watcher neither misses nor repeats an event.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from murmur.node.broadcast import Broadcaster
from murmur.storage import EventRecord, Store


class EventLog:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._live: Broadcaster[EventRecord] = Broadcaster(queue_size=1024)

    async def record(self, *, kind: str, subject: str, message: str) -> EventRecord:
        event = await self._store.append_event(kind=kind, subject=subject, message=message)
        self._live.publish(event)
        return event

    def publish(self, event: EventRecord) -> None:
        """Tells watchers of an event another part already wrote in its own transaction."""
        self._live.publish(event)

    async def follow(self, *, since_id: int = 0, subject: str = "") -> AsyncIterator[EventRecord]:
        async with self._live.subscribe() as live:
            last_id = since_id
            while True:
                backlog = await self._store.list_events(
                    since_id=last_id, subject=subject or None, limit=1000
                )
                for event in backlog:
                    last_id = event.id
                    yield event
                if len(backlog) < 1000:
                    break
            while True:
                # The live feed is only a doorbell: the store is the record, so a
                # watcher that fell behind (its queue overflowed) still misses nothing.
                await live.get()
                while not live.empty():
                    live.get_nowait()
                for event in await self._store.list_events(
                    since_id=last_id, subject=subject or None, limit=1000
                ):
                    last_id = event.id
                    yield event
