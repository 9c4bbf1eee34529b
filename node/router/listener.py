"""The router's listening socket: TLS or plain, with a cap on the connections open and
deadlines on idle ones, so that clients holding connections (slow-loris) cannot take
the file descriptors the rest of the daemon needs.

- ``IDLE_SECONDS``: a connection with no whole request for this long is closed:
  idle between requests, or a request's headers still dripping in (aiohttp's
  keep-alive timer runs from the connection's start, and a request counts only once
  its headers are complete). Its body has ``BODY_SECONDS`` more (node/router/intake.py).
- ``LINGER_SECONDS``: what is left of a refused body is read (and dropped) this
  long at most, then the connection is closed.
- ``HANDSHAKE_SECONDS`` (node/router/tls.py): a TLS client's handshake.
- :func:`connection_limit`: past it, a new connection is closed as soon as it is
  accepted (after its handshake, under TLS); the connections already open go on.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl

from aiohttp import web

_log = logging.getLogger("murmur.router")

IDLE_SECONDS = 30.0
"""How long a connection may go without a whole request (longer than the 5 s an
``httpx`` client keeps an idle connection, so clients close first)."""
LINGER_SECONDS = 2.0
"""After a refused body (408, 413), how long the rest of it is read and dropped, so
that a client still sending it reads the refusal; then the connection is closed."""
MAX_CONNECTIONS = 1000
"""Most client connections one router keeps open."""
BACKLOG = 128


def connection_limit() -> int:
    """How many client connections the router keeps: a quarter of the process's
    file descriptors (each client connection may hold a second one toward a replica,
    and gRPC, SQLite and the runs' logs need the rest), at most ``MAX_CONNECTIONS``."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(8, min(MAX_CONNECTIONS, soft // 4))


class _TurnedAway(asyncio.Protocol):
    """A connection over the cap: closed at once (the client sees a reset)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()
        else:
            transport.close()


class CappedListener:
    """Accepts connections for an aiohttp server, at most ``limit`` open at once.

    Args:
        server: the runner's protocol factory (``ServerRunner.server``).
        limit: most connections open at once.
    """

    def __init__(self, server: web.Server, limit: int) -> None:
        self._server = server
        self.limit = limit
        self.turned_away = 0
        self._listener: asyncio.Server | None = None

    def _accept(self) -> asyncio.BaseProtocol:
        if len(self._server.connections) < self.limit:
            return self._server()
        if not self.turned_away % 1000:  # the first, then every thousandth
            _log.warning(
                "router: %d connections open, the most it keeps: turning new ones away",
                self.limit,
                extra={"event": "router.connections_full"},
            )
        self.turned_away += 1
        return _TurnedAway()

    async def start(
        self, host: str, port: int, *, tls: ssl.SSLContext | None, handshake_seconds: float
    ) -> None:
        loop = asyncio.get_running_loop()
        if tls is None:
            self._listener = await loop.create_server(
                self._accept, host, port, backlog=BACKLOG, reuse_address=True
            )
        else:
            self._listener = await loop.create_server(
                self._accept, host, port, backlog=BACKLOG, reuse_address=True,
                ssl=tls, ssl_handshake_timeout=handshake_seconds,
            )  # fmt: skip

    def close(self) -> None:
        """Stops accepting; the connections open are the server's to close."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
