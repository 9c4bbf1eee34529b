"""A small OpenAI-style replica in the test's own loop: ``/v1/chat/completions``
answered by the test's handler, on a free loopback port (``served``: any aiohttp app
so)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from tests.support.nodes import free_port


@contextlib.asynccontextmanager
async def chat_replica(
    chat: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[int]:
    """Serves ``chat`` until the block ends; yields its port."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    async with served(app) as port:
        yield port


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[int]:
    """Serves ``app`` on a free loopback port until the block ends; yields the port."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()
