"""`ModelRouter`: the OpenAI-compatible HTTP front of a node (aiohttp, on the daemon's
event loop).

- ``GET /v1/models``: every name a ready replica anywhere in the cluster answers to.
- ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``: sent, by the
  body's ``model``, to a ready replica (node/router/routes.py), and its answer passed
  back as it comes: a stream of server-sent events is not buffered.
- A replica that cannot be reached, or that closes the connection before its answer
  begins, is left for another one (nothing reached the client yet); once the answer
  has begun, its failure ends the client's answer too.
- A client that goes away cancels its request to the replica (the handler is
  cancelled, which closes the upstream connection).
- Errors are OpenAI's shape (``{"error": {"message", "type", "code"}}``): malformed
  JSON or no ``model`` 400, an unknown model 404, a model with no ready replica 503
  (with why), a body over ``MAX_BODY_BYTES`` 413, every replica failing 502.
"""

from __future__ import annotations

import json
import logging
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
_PASSED_RESPONSE_HEADERS = ("Content-Type", "Cache-Control")


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

    async def _models(self, request: web.Request) -> web.Response:
        data = [
            {"id": name, "object": "model", "owned_by": "murmur"} for name in self._table().models()
        ]
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
        table = self._table()
        tried: set[str] = set()
        while True:
            self._turn += 1
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
                _log.info("replica %s failed before answering: %s", key, exc,
                          extra={"event": "router.upstream_failed", "job": key})  # fmt: skip
                return None
            async with upstream:
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

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        return self._session

    async def _close(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


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
