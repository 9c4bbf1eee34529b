"""`ModelRouter`: the OpenAI-compatible HTTP front of a node (aiohttp, on the daemon's
event loop).

- ``GET /v1/models``: every name a ready replica anywhere in the cluster answers to.
- ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``: sent, by the
  body's ``model``, to a ready replica (node/router/routes.py), and its answer passed
  back as it comes: a stream of server-sent events is not buffered. A small answer
  that is not a stream (its length known, at most ``WHOLE_ANSWER_BYTES``) is read
  whole and sent on in one write.
- A replica that cannot be reached, or that closes the connection before its answer
  begins, is left for another one (nothing reached the client yet); once the answer
  has begun, its failure ends the client's answer too (a whole answer cut short: 502).
- The routing table (built from the cluster's view) is reused for
  ``TABLE_REUSE_SECONDS``, except to refuse a request or when every replica in it failed.
- A client that goes away cancels its request to the replica (the handler is
  cancelled, which closes the upstream connection).
- Errors are OpenAI's shape (``{"error": {"message", "type", "code"}}``): malformed
  JSON or no ``model`` 400, an unknown model 404, a model with no ready replica 503
  (with why), a body over ``MAX_BODY_BYTES`` 413, every replica failing 502.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from murmur.node.router.routes import RoutingTable

_log = logging.getLogger("murmur.router")

MAX_BODY_BYTES = 16 * 1024 * 1024
"""A request body larger than this is refused (413): prompts, not uploads."""
ROUTED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=600)
"""No limit on a whole answer (a long generation streams for minutes); a replica that
takes 5 s to accept a connection, or sends nothing for 10 minutes, has failed."""
_PASSED_RESPONSE_HEADERS = ("Content-Type", "Cache-Control", "Content-Encoding")
"""A compressed answer is passed on compressed (the router does not decompress), so
its encoding goes with it."""
WHOLE_ANSWER_BYTES = 1024 * 1024
"""An answer that is not a stream, of at most this many bytes, is read whole before
it is sent on (one write); a larger one is passed on as it comes, like a stream."""
TABLE_REUSE_SECONDS = 0.1
"""How long a routing table serves requests before the router builds another: one
describes every node (this one afresh), which costs more than proxying a request, and
gossip takes longer than this to bring a change anyway. A table that names no replica
for a request is never reused: that answer is always the cluster's latest."""


def openai_error(status: int, message: str, kind: str, code: str | None = None) -> web.Response:
    """An error as OpenAI's API words one."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status)


class ModelRouter:
    """Routes OpenAI API requests to the cluster's ready replicas.

    Args:
        table: the routing table as gossip says now (called per request).
    """

    def __init__(self, table: Callable[[], RoutingTable]) -> None:
        self._table = table
        self._reused: RoutingTable | None = None
        self._built_at = 0.0
        self._in_flight: dict[str, int] = {}
        self._turn = 0
        self._session: aiohttp.ClientSession | None = None
        self.served = 0
        """Requests answered by a replica (counters for the node's stats)."""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/v1/models", self._models)
        for path in ROUTED_PATHS:
            app.router.add_post(path, self._forward)
        app.on_cleanup.append(self._close)
        return app

    def in_flight(self) -> dict[str, int]:
        """Requests in flight per replica (job id)."""
        return {key: count for key, count in self._in_flight.items() if count}

    def _routes(self, *, fresh: bool = False) -> RoutingTable:
        """The routing table: the last one while it is recent, unless ``fresh``."""
        now = time.monotonic()
        if fresh or self._reused is None or now >= self._built_at + TABLE_REUSE_SECONDS:
            self._reused = self._table()
            self._built_at = now
        return self._reused

    async def _models(self, request: web.Request) -> web.Response:
        # Fresh, so that a request for a model listed here finds it.
        table = self._routes(fresh=True)
        data = [{"id": name, "object": "model", "owned_by": "murmur"} for name in table.models()]
        return web.json_response({"object": "list", "data": data})

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return openai_error(
                413, f"the request body is over {MAX_BODY_BYTES} bytes", "invalid_request_error"
            )
        try:
            payload: Any = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return openai_error(400, "the request body is not JSON", "invalid_request_error")
        model = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(model, str) or not model:
            return openai_error(
                400, "you must give a model (the 'model' field)", "invalid_request_error"
            )
        asked = time.monotonic()
        table, built_at = self._routes(), self._built_at
        tried: set[str] = set()
        while True:
            self._turn += 1
            route = table.choose(model, self._in_flight, turn=self._turn, excluded=tried)
            if route is None and built_at < asked:
                # No replica left in a table built before this request: ask the latest.
                table, built_at = self._routes(fresh=True), self._built_at
                route = table.choose(model, self._in_flight, turn=self._turn, excluded=tried)
            if route is None:
                if tried:
                    return openai_error(
                        502, f"every ready replica of {model!r} failed before answering",
                        "api_error", "upstream_failed",
                    )  # fmt: skip
                status, why = table.why_none(model)
                if status == 404:
                    return openai_error(404, why, "invalid_request_error", "model_not_found")
                return openai_error(503, why, "api_error", "no_ready_replica")
            tried.add(route.key)
            answered = await self._through(request, body, route.url, route.key)
            if answered is not None:
                return answered

    async def _through(
        self, request: web.Request, body: bytes, base: str, key: str
    ) -> web.StreamResponse | None:
        """The replica's answer passed through; None when it failed before its answer
        began (the caller tries another)."""
        session = self._client()
        kind = request.headers.get("Content-Type", "application/json")
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            try:
                upstream = await session.post(
                    base + request.path,
                    data=body,
                    headers={"Content-Type": kind},
                    timeout=UPSTREAM_TIMEOUT,
                )
            except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
                _log.debug("replica %s failed before answering: %s", key, exc,
                          extra={"event": "router.upstream_failed", "job": key})  # fmt: skip
                return None
            async with upstream:
                if _is_whole(upstream):
                    return await self._whole(upstream, key)
                response = web.StreamResponse(status=upstream.status)
                for name in _PASSED_RESPONSE_HEADERS:
                    if name in upstream.headers:
                        response.headers[name] = upstream.headers[name]
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                self.served += 1
                return response
        finally:
            self._in_flight[key] -= 1

    async def _whole(self, upstream: aiohttp.ClientResponse, key: str) -> web.Response:
        """A small answer that is not a stream, read whole and sent in one write (a
        stream's chunked framing costs it two writes more)."""
        try:
            data = await upstream.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            _log.info("replica %s failed while answering: %s", key, exc,
                      extra={"event": "router.upstream_failed", "job": key})  # fmt: skip
            return openai_error(
                502, "the replica failed while answering", "api_error", "upstream_failed"
            )
        response = web.Response(status=upstream.status, body=data)
        for name in _PASSED_RESPONSE_HEADERS:
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        self.served += 1
        return response

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No cookie jar: a cookie one replica sets must never go out with another
            # user's request.
            self._session = aiohttp.ClientSession(
                auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def _close(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _is_whole(upstream: aiohttp.ClientResponse) -> bool:
    """Whether an answer is small and whole (its length known, not a stream)."""
    length = upstream.content_length
    return (
        length is not None
        and length <= WHOLE_ANSWER_BYTES
        and not upstream.content_type.startswith("text/event-stream")
    )


class RouterServer:
    """The router's listener: ``start`` binds it, ``close`` stops it (requests in
    flight are cancelled)."""

    def __init__(self, router: ModelRouter, host: str, port: int) -> None:
        self._router = router
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self._router.app(), handler_cancellation=True, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self._host, self._port).start()
        self._runner = runner
        _log.info("router listening on %s:%d", self._host, self._port,
                  extra={"event": "router.listening", "port": self._port})  # fmt: skip

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
