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
- Errors are OpenAI's shape (``{"error": {"message", "type", "code"}}``), their
  statuses chosen in one place (node/router/errors.py): malformed JSON or no
  ``model`` 400, an unknown model 404, a body too slow 408 or too large 413, a model
  with no ready replica 503 (with why), every replica failing 502, a replica that
  took the request but sent nothing for ``ANSWER_SECONDS`` 504 (not sent to another:
  the first may still be working on it, and an overloaded service would get the work
  twice).
- Hostile clients are bounded: bodies by node/router/intake.py (size, deadline, the
  bodies held at once, the cost of their JSON), connections by
  node/router/listener.py (how many, how long without a request); beyond loopback
  the listener speaks TLS with the node's certificate (node/router/tls.py).
- Every request for a service counts toward its requests/s and latency
  (node/router/traffic.py), which the node gossips for ``murmur top``.
- API keys (node/router/keys.py), checked before the body is read: a missing key
  where one is required, or a wrong, revoked or expired one, 401; a model the key may
  not use 403 (and ``/v1/models`` lists only the key's); over its requests per
  minute 429 with ``Retry-After``. What each key used is counted as the answers
  pass (node/router/usage.py); the key itself never goes on to the replica.

CPU per request is nearly all aiohttp's. A small whole answer costs the router ~110
µs (uvloop, Python 3.11, 32 clients), and a bare aiohttp proxy ~100 µs of that (its
server ~26 µs, its client session ~45 µs, the loop's wake-ups the rest); the
router's own work (the body's model, the key, the choice, the counts) is ~5 µs. So
the request path keeps out of aiohttp's way: no Application, middleware or URL
dispatcher (``handle``), each model's ready replicas indexed once per routing table
(routes.py), a replica's URL parsed once per table, a body that came with its
headers taken without a wait, and one timer per request (the session's read timer).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from murmur.node.errors import StartupError
from murmur.node.router.errors import Failure, failure_response
from murmur.node.router.intake import Intake, Refused
from murmur.node.router.keys import ANONYMOUS, Caller, KeyGate, Refusal
from murmur.node.router.listener import (
    IDLE_SECONDS,
    LINGER_SECONDS,
    CappedListener,
    connection_limit,
)
from murmur.node.router.routes import RoutingTable
from murmur.node.router.tls import RouterTls, covers
from murmur.node.router.traffic import AnswerTiming, TrafficWindow
from murmur.node.router.usage import (
    StreamUsageScanner,
    TailUsageScanner,
    Tokens,
    UsageCounter,
    usage_of_answer,
)

_log = logging.getLogger("murmur.router")

ROUTED_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
CONNECT_SECONDS = 2.0
"""A replica that takes this long to accept a connection has failed (the request goes
to another): a kernel answers a connection within milliseconds on a lab's network,
whatever its server's load, so this long means the host is gone."""
SET_ASIDE_SECONDS = 10.0
"""A replica that failed before answering goes after every other one for this long
(routes.py ``set_aside``), unless it answers meanwhile: long enough for membership
to declare a dead node dead, short enough that a replica restarted in place gets
its share again soon."""
ANSWER_SECONDS = 600.0
"""How long a replica that took a request may send nothing: before its answer begins
(an answer that is not streamed begins when the whole generation is done), then 504;
or between two parts of it, then the answer is cut. There is no limit on a whole
answer: a long generation streams for minutes."""
SHUTDOWN_SECONDS = 5.0
"""Requests in flight when the node stops get this long to finish, then are cut."""
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


class ModelRouter:
    """Routes OpenAI API requests to the cluster's ready replicas.

    Args:
        table: the routing table as gossip says now (called per request).
        keys: checks requests' API keys; None: none are (every request is anonymous).
        usage: where each key's requests and tokens are counted; None: nowhere.
        traffic: where each service's requests and latency are counted.
        intake: takes the request bodies, within their limits.
        answer_seconds: how long a replica may send nothing (504 before its answer).
    """

    def __init__(
        self,
        table: Callable[[], RoutingTable],
        *,
        keys: KeyGate | None = None,
        usage: UsageCounter | None = None,
        traffic: TrafficWindow | None = None,
        intake: Intake | None = None,
        answer_seconds: float = ANSWER_SECONDS,
    ) -> None:
        self._table = table
        self._keys = keys
        self._usage = usage
        self.traffic = traffic or TrafficWindow()
        self._intake = intake or Intake()
        self._answer_seconds = answer_seconds
        self._reused: RoutingTable | None = None
        self._built_at = 0.0
        self._in_flight: dict[str, int] = {}
        self._failed_at: dict[str, float] = {}
        """Replicas that failed before answering, and when (``SET_ASIDE_SECONDS``)."""
        self._turn = 0
        self._session: aiohttp.ClientSession | None = None
        self._paths: dict[str, tuple[tuple[str, ...], Handler]] = {
            "/v1/models": (("GET", "HEAD"), self._models)
        }
        self._paths.update((path, (("POST",), self._forward)) for path in ROUTED_PATHS)
        """Path → its methods and handler: the whole of the router's URL space."""
        self.served = 0
        """Requests answered by a replica (counters for the node's stats)."""

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request's way in. aiohttp's low-level server calls this directly:
        an Application's URL dispatcher and one middleware cost ~5 µs of CPU a
        request (a bare aiohttp server 26 µs, with them 32 µs), as much as all of
        the router's own work on a request, to tell four fixed paths apart.

        Raises:
            web.HTTPNotFound: not one of the router's paths (aiohttp's 404).
            web.HTTPMethodNotAllowed: a path asked with the wrong method (405).
        """
        found = self._paths.get(request.rel_url.path_safe)  # what aiohttp's dispatcher matches
        if found is None:
            raise web.HTTPNotFound()
        methods, handler = found
        if request.method not in methods:
            raise web.HTTPMethodNotAllowed(request.method, methods)
        if request.headers.get("Expect") is not None:
            await _continue(request)
        return await handler(request)

    def request_factory(self) -> Callable[..., web.BaseRequest]:
        """How the server makes a request: one whose ``read()`` takes bodies as large
        as the intake does (aiohttp's default stops at 1 MiB)."""
        return functools.partial(
            web.BaseRequest,
            loop=asyncio.get_running_loop(),
            client_max_size=self._intake.max_body_bytes,
        )

    def in_flight(self) -> dict[str, int]:
        """Requests in flight per replica (job id)."""
        return {key: count for key, count in self._in_flight.items() if count}

    def _routes(self, now: float, *, fresh: bool = False) -> RoutingTable:
        """The routing table: the last one while it is recent, unless ``fresh``."""
        if fresh or self._reused is None or now >= self._built_at + TABLE_REUSE_SECONDS:
            self._reused = self._table()
            self._built_at = now
        return self._reused

    def _set_aside(self, now: float) -> frozenset[str]:
        """Replicas that failed before answering within ``SET_ASIDE_SECONDS``; older
        failures are forgotten (so this holds only replicas failing now)."""
        failed = self._failed_at
        if not failed:
            return _NONE
        for key in [key for key, at in failed.items() if now - at >= SET_ASIDE_SECONDS]:
            del failed[key]
        return frozenset(failed)

    def _caller(self, request: web.BaseRequest) -> Caller | Refusal:
        if self._keys is None:
            return ANONYMOUS
        return self._keys.authenticate(request.headers.get("Authorization"))

    async def _models(self, request: web.BaseRequest) -> web.Response:
        caller = self._caller(request)
        if isinstance(caller, Refusal):
            return caller.response()
        # Fresh, so that a request for a model listed here finds it.
        table = self._routes(time.monotonic(), fresh=True)
        data = [
            {"id": name, "object": "model", "owned_by": "murmur"}
            for name in table.models()
            if caller.allows(name)
        ]
        return web.json_response({"object": "list", "data": data})

    async def _forward(self, request: web.BaseRequest) -> web.StreamResponse:
        """A request for a replica, its body held in the intake's budget meanwhile."""
        try:
            reserved = self._intake.reserve(request)
        except Refused as refused:
            return refused.response()
        try:
            return await self._route(request)
        finally:
            self._intake.release(reserved)

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        caller = self._caller(request)  # before the body: a stranger's is not read
        if isinstance(caller, Refusal):
            return caller.response()
        try:
            body, model = await self._intake.take(request)
        except Refused as refused:
            return refused.response()
        if self._keys is not None and (refusal := self._keys.admit(caller, model)) is not None:
            return refusal.response()
        asked = time.monotonic()
        table = self._routes(asked)
        built_at = self._built_at
        tried: set[str] = set()
        set_aside = self._set_aside(asked)
        while True:
            self._turn += 1
            route = table.choose(
                model, self._in_flight, turn=self._turn, excluded=tried, set_aside=set_aside
            )
            if route is None and built_at < asked:
                # No replica left in a table built before this request: ask the latest.
                table, built_at = self._routes(asked, fresh=True), asked
                route = table.choose(
                    model, self._in_flight, turn=self._turn, excluded=tried, set_aside=set_aside
                )
            if route is None:
                return self._none_left(table, model, tried=bool(tried))
            tried.add(route.key)
            timing = AnswerTiming(asked)
            url = table.url_for(route, request.path)
            answered = await self._through(request, url, body, route.key, caller, timing)
            if answered is not None:
                self.traffic.record(
                    route.service, latency=timing.latency, error=answered.status >= 500
                )
                return answered

    def _none_left(self, table: RoutingTable, model: str, *, tried: bool) -> web.Response:
        """The refusal when no replica is left for ``model`` (counted as its
        service's error)."""
        service = table.service_of(model)
        if service is not None:
            self.traffic.record(service, latency=None, error=True)
        if tried:
            return failure_response(
                Failure.UPSTREAM_FAILED, f"every ready replica of {model!r} failed before answering"
            )
        status, why = table.why_none(model)
        if status == 404:
            return failure_response(Failure.MODEL_NOT_FOUND, why)
        return failure_response(Failure.NO_READY_REPLICA, why)

    async def _through(
        self,
        request: web.BaseRequest,
        url: URL,
        body: bytes,
        key: str,
        caller: Caller,
        timing: AnswerTiming,
    ) -> web.StreamResponse | None:
        """The replica's answer passed through; None when it failed before its answer
        began (the caller tries another)."""
        session = self._client()
        kind = request.headers.get("Content-Type")
        headers = _JSON_HEADERS if kind is None or kind == _JSON else {"Content-Type": kind}
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            try:
                upstream = await session.post(url, data=body, headers=headers)
            except aiohttp.SocketTimeoutError:  # connected, sent, and no answer came
                _log.info("replica %s took a request but did not begin its answer within "
                          "%g s", key, self._answer_seconds,
                          extra={"event": "router.upstream_timeout", "job": key})  # fmt: skip
                return failure_response(
                    Failure.UPSTREAM_TIMEOUT,
                    f"the replica did not begin its answer within {self._answer_seconds:g} s",
                )
            except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
                _log.debug("replica %s failed before answering: %s", key, exc,
                          extra={"event": "router.upstream_failed", "job": key})  # fmt: skip
                self._failed_at[key] = time.monotonic()
                return None
            if self._failed_at:
                self._failed_at.pop(key, None)  # it answers again
            async with upstream:
                if _is_whole(upstream):
                    return await self._whole(upstream, key, caller, timing)
                return await self._passed_on(request, upstream, caller, timing)
        finally:
            self._in_flight[key] -= 1

    async def _passed_on(
        self,
        request: web.BaseRequest,
        upstream: aiohttp.ClientResponse,
        caller: Caller,
        timing: AnswerTiming,
    ) -> web.StreamResponse:
        """A stream (or a large answer) passed on piece by piece as it comes."""
        response = web.StreamResponse(status=upstream.status, headers=_passed(upstream.headers))
        await response.prepare(request)
        scanner = self._scanner(caller, upstream)
        try:
            async for chunk in upstream.content.iter_any():
                timing.begin()
                await response.write(chunk)
                if scanner is not None:
                    scanner.feed(chunk)
            await response.write_eof()
        finally:  # a client gone, or a replica failing, mid-answer: counted too
            self._count(caller, scanner.finish() if scanner is not None else None)
        self.served += 1
        return response

    async def _whole(
        self,
        upstream: aiohttp.ClientResponse,
        key: str,
        caller: Caller,
        timing: AnswerTiming,
    ) -> web.Response:
        """A small answer that is not a stream, read whole and sent in one write (a
        stream's chunked framing costs it two writes more)."""
        try:
            data = await upstream.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            _log.info("replica %s failed while answering: %s", key, exc,
                      extra={"event": "router.upstream_failed", "job": key})  # fmt: skip
            return failure_response(Failure.UPSTREAM_FAILED, "the replica failed while answering")
        timing.begin()
        response = web.Response(
            status=upstream.status, body=data, headers=_passed(upstream.headers)
        )
        self.served += 1
        if caller.key is not None:
            compressed = "Content-Encoding" in upstream.headers  # its usage is not readable
            self._count(caller, None if compressed else usage_of_answer(data))
        return response

    def _count(self, caller: Caller, tokens: Tokens | None) -> None:
        """One request answered for ``caller``'s key (nothing for an anonymous one)."""
        if caller.key is not None and self._usage is not None:
            self._usage.add(caller.key.id, tokens)

    def _scanner(
        self, caller: Caller, upstream: aiohttp.ClientResponse
    ) -> StreamUsageScanner | TailUsageScanner | None:
        """What reads the usage of an answer passed on in pieces; None when nothing is
        read (no key, or an answer compressed: its usage is not readable)."""
        if caller.key is None or self._usage is None or "Content-Encoding" in upstream.headers:
            return None
        if upstream.content_type.startswith("text/event-stream"):
            return StreamUsageScanner()
        return TailUsageScanner()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            # No cookie jar: a cookie one replica sets must never go out with another
            # user's request.
            # No limit of its own on connections (aiohttp's default, 100, would let
            # 100 requests stuck on one replica hold up every other): the listener's
            # cap on client connections bounds the requests in flight.
            # aiohttp's read timer covers the wait for the answer's head too: one
            # timer, not a second one around each request.
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=CONNECT_SECONDS, sock_read=self._answer_seconds
                ),
            )
        return self._session

    async def close(self) -> None:
        """Closes the connections to the replicas (once the server stopped)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
_NONE: frozenset[str] = frozenset()
_JSON = "application/json"
_JSON_HEADERS = CIMultiDict({"Content-Type": _JSON})
"""What goes to a replica with a JSON body (nearly every request): built once."""


def _passed(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    """The headers of a replica's answer that go on to the client."""
    passed = {}
    for name in _PASSED_RESPONSE_HEADERS:
        value = headers.get(name)
        if value is not None:
            passed[name] = value
    return passed


async def _continue(request: web.BaseRequest) -> None:
    """Answers ``Expect: 100-continue`` (as aiohttp's URL dispatcher would), so that a
    client waiting for it sends its body.

    Raises:
        web.HTTPExpectationFailed: any other expectation (417).
    """
    expect = request.headers.get("Expect", "")
    if request.version != aiohttp.HttpVersion11:
        return
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the answer proper has not begun
    await request.writer.drain()


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
    flight get ``SHUTDOWN_SECONDS``, then are cancelled).

    Args:
        router: what answers the requests.
        host: the address to listen on.
        port: the port to listen on.
        tls: HTTPS with the node's certificate; None: plain HTTP (on loopback only:
            node/config.py refuses it elsewhere).
        max_connections: most client connections open at once (default:
            ``connection_limit()``, from the process's file descriptors).
        idle_seconds: a connection without a whole request for this long is closed.
        linger_seconds: how long the rest of a refused body is read before the
            connection is closed.
    """

    def __init__(
        self,
        router: ModelRouter,
        host: str,
        port: int,
        *,
        tls: RouterTls | None = None,
        max_connections: int | None = None,
        idle_seconds: float = IDLE_SECONDS,
        linger_seconds: float = LINGER_SECONDS,
    ) -> None:
        self._router = router
        self._host = host
        self._port = port
        self._tls = tls
        self._max_connections = max_connections or connection_limit()
        self._idle_seconds = idle_seconds
        self._linger_seconds = linger_seconds
        self._runner: web.ServerRunner | None = None
        self._listener: CappedListener | None = None

    @property
    def turned_away(self) -> int:
        """Connections closed at once because the most were open."""
        return self._listener.turned_away if self._listener is not None else 0

    async def start(self) -> None:
        router = self._router
        server = web.Server(
            router.handle,
            request_factory=router.request_factory(),
            handler_cancellation=True,
            access_log=None,
            keepalive_timeout=self._idle_seconds,
            lingering_time=self._linger_seconds,
        )
        runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_SECONDS)
        await runner.setup()
        if runner.server is None:  # setup() made it
            raise RuntimeError("the router's HTTP server was not set up")
        listener = CappedListener(runner.server, self._max_connections)
        try:
            await listener.start(
                self._host,
                self._port,
                tls=self._tls.context() if self._tls is not None else None,
                handshake_seconds=self._tls.handshake_seconds if self._tls is not None else 0,
            )
        except BaseException as exc:
            await runner.cleanup()
            await router.close()
            if isinstance(exc, OSError):  # the port taken, or the address not this host's
                why = os.strerror(exc.errno) if exc.errno else str(exc)
                raise StartupError(
                    f"the router cannot listen on {self._host}:{self._port}: {why}"
                ) from None
            raise
        self._runner, self._listener = runner, listener
        if self._tls is not None and not covers(self._tls.bundle, self._host):
            _log.warning(
                "the router listens on %s, which this node's certificate does not name: "
                "clients that dial it there fail to verify it; they can dial the node's "
                "advertised address instead", self._host,
                extra={"event": "router.tls_name_mismatch"},
            )  # fmt: skip
        scheme = "https" if self._tls is not None else "http"
        _log.info("router listening on %s://%s:%d", scheme, self._host, self._port,
                  extra={"event": "router.listening", "port": self._port,
                         "tls": self._tls is not None})  # fmt: skip

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._router.close()
