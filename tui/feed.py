"""The watch streams that keep `ClusterState` current, and failover when they break.

One task per stream (WatchNodes, WatchJobs) under a TaskGroup: no polling, and
when either stream fails both restart together on whichever node the connection
moves to. Pumps only write into the state (bumping its revision); repainting is the app's
business, on its own tick, which is what batches a burst of changes into one frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from murmur import MurmurError
from murmur.tui.connection import Connection
from murmur.tui.state import ClusterState

RETRY_INITIAL_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0


class StreamEnded(MurmurError):
    """A watch stream finished, which a live node never does: treat it as lost."""


class LiveFeed:
    def __init__(
        self,
        connection: Connection,
        state: ClusterState,
        *,
        on_connection: Callable[[str, bool], None],
    ) -> None:
        """
        Args:
            on_connection: Called with the connection's notice and whether it is
                attached, whenever that changes.
        """
        self._connection = connection
        self._state = state
        self._on_connection = on_connection

    async def run(self) -> None:
        """Streams until cancelled, failing over and retrying with backoff."""
        connection = self._connection
        delay = RETRY_INITIAL_SECONDS
        try:
            await connection.attach()
            self._on_connection(connection.notice, True)
        except MurmurError as exc:
            await self._recover(str(exc))
        while True:
            try:
                async with asyncio.TaskGroup() as streams:
                    streams.create_task(self._pump_nodes())
                    streams.create_task(self._pump_jobs())
            except* MurmurError as failure:
                why = str(failure.exceptions[0])
            if await self._recover(why):
                delay = RETRY_INITIAL_SECONDS
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _recover(self, why: str) -> bool:
        attached = await self._connection.failover(why)
        self._on_connection(self._connection.notice, attached)
        return attached

    async def _pump_nodes(self) -> None:
        async for node in self._connection.client.watch_nodes():
            self._state.apply_node(node)
            self._connection.learn((node,))
        raise StreamEnded(f"{self._connection.address} ended the node stream")

    async def _pump_jobs(self) -> None:
        """Jobs come through the cluster's leader: when the stream breaks but the node
        still answers (an election is under way, or no leader exists), the node view
        stays, the header says why jobs are missing, and the stream is tried again."""
        connection = self._connection
        delay = RETRY_INITIAL_SECONDS
        while True:
            try:
                async for job in connection.client.watch_jobs():
                    if delay != RETRY_INITIAL_SECONDS:
                        delay = RETRY_INITIAL_SECONDS
                        self._on_connection(connection.notice, True)
                    self._state.apply_job(job)
                raise StreamEnded(f"{connection.address} ended the job stream")
            except MurmurError as exc:
                if not await connection.answers():
                    raise
                self._on_connection(f"jobs unavailable: {exc}; retrying", True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)
