"""What the router takes from a request before it routes it: the body, within a size
and a deadline, and the body's ``model``, without letting a hostile client hurt the
daemon.

The router runs on the daemon's event loop, next to gossip, consensus and the API,
so what one request may cost the loop and the memory is bounded:

- a body over ``MAX_BODY_BYTES`` is refused (413), before a byte of it is read when
  its Content-Length says so;
- the bodies held at once (read, or on their way to a replica, which may be retried)
  are at most ``BODY_BUDGET_BYTES`` together: past it a request is refused (503) at
  once, from its Content-Length, so that many clients sending large bodies together
  cannot take the node's memory from its jobs;
- a body must arrive within ``BODY_SECONDS`` (408, then the connection is closed): a
  client that drips a byte a second holds its connection that long, not forever;
- the JSON is parsed on the loop (the parser holds the GIL, so a thread would not
  free the loop). Its cost grows with the number of values, not bytes (a 16 MiB
  array of empty arrays takes 0.8 s and a 16 MiB array of empty objects 300 MiB),
  so a body's values are counted first (its commas and opening brackets: a count
  that costs a millisecond a megabyte and grows with the values). Over
  ``MAX_JSON_VALUES`` it is refused unparsed; from ``COSTLY_JSON_VALUES`` up it is
  parsed alone in its turn of the loop: a burst of them stalls the loop for one
  parse, not for the sum;
- nesting deeper than Python's recursion limit is malformed JSON (400), not a crash;
- the parsed body is dropped as soon as its ``model`` is read: the replica gets the
  body's bytes as they came, unknown fields and all.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from murmur.node.router.errors import Failure, failure_response

MAX_BODY_BYTES = 16 * 1024 * 1024
"""A request body larger than this is refused (413): prompts, not uploads."""
BODY_BUDGET_BYTES = 256 * 1024 * 1024
"""The request bodies one router holds at once, together (a body without a
Content-Length counts as ``MAX_BODY_BYTES`` until it is read)."""
BODY_SECONDS = 30.0
"""How long a request's body may take to arrive once its headers did."""
MAX_JSON_VALUES = 1_000_000
"""Most commas and opening brackets a body may hold: about 100 ms of parsing at worst
(an array of empty arrays). An embeddings request of token ids has one comma per
token, and OpenAI's own embeddings endpoint takes 300,000 tokens a request at most."""
COSTLY_JSON_VALUES = 10_000
"""Bodies with this many values or more (a few milliseconds of parsing) are parsed
one per turn of the event loop; a chat request has far fewer."""
MAX_MODEL_CHARS = 256
"""Longest model name taken: a name is echoed in errors and logs."""


class Refused(Exception):
    """The request is refused before it is routed."""

    def __init__(self, failure: Failure, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.failure = failure
        self.close = close

    def response(self) -> web.Response:
        return failure_response(self.failure, str(self), close=self.close)


def json_values(body: bytes) -> int:
    """About how many values a JSON text holds, as cheaply as it can be told: its
    commas and opening brackets (those inside strings too)."""
    return body.count(b",") + body.count(b"[") + body.count(b"{")


def model_of(body: bytes) -> str:
    """The ``model`` of a request body (parsed whole: see ``json_values`` first).

    Raises:
        Refused: the body is not a JSON object with a model name (400).
    """
    try:
        payload: Any = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise Refused(Failure.BAD_REQUEST, "the request body is not JSON") from None
    if not isinstance(payload, dict):
        raise Refused(
            Failure.BAD_REQUEST, "the request body must be a JSON object with a 'model' field"
        )
    model = payload.get("model")
    if model is None or model == "":
        raise Refused(Failure.BAD_REQUEST, "you must give a model (the 'model' field)")
    if not isinstance(model, str):
        raise Refused(Failure.BAD_REQUEST, "the 'model' field must be a string")
    if len(model) > MAX_MODEL_CHARS:
        raise Refused(Failure.BAD_REQUEST, f"the model name is over {MAX_MODEL_CHARS} characters")
    return model


class Intake:
    """Bodies and their models, within the limits above (one per router).

    Args:
        max_body_bytes: the largest body taken.
        budget_bytes: the bodies held at once, together.
        body_seconds: how long a body may take to arrive.
    """

    def __init__(
        self,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        budget_bytes: int = BODY_BUDGET_BYTES,
        body_seconds: float = BODY_SECONDS,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.budget_bytes = budget_bytes
        self.body_seconds = body_seconds
        self.held_bytes = 0
        """What the requests in progress reserved of the budget."""
        self._costly = asyncio.Lock()

    def reserve(self, request: web.BaseRequest) -> int:
        """Reserves the request's body in the budget, from its headers alone (the
        body lives until ``release``: a retry sends it again); returns the bytes
        reserved.

        Raises:
            Refused: its Content-Length is over the largest body (413), or the
                budget holds no room for it (503).
        """
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise self._too_large()
        needed = self.max_body_bytes if length is None else length
        if self.held_bytes + needed > self.budget_bytes:
            raise Refused(
                Failure.BUSY,
                "the router holds as many request bodies as it may; try again shortly",
            )
        self.held_bytes += needed
        return needed

    def _too_large(self) -> Refused:
        return Refused(
            Failure.BODY_TOO_LARGE, f"the request body is over {self.max_body_bytes} bytes"
        )

    def release(self, reserved: int) -> None:
        """The request whose body ``reserve`` counted is done."""
        self.held_bytes -= reserved

    async def take(self, request: web.BaseRequest) -> tuple[bytes, str]:
        """The request's body and its model.

        Raises:
            Refused: too large (413), too slow (408), not a JSON object with a model
                (400).
        """
        content = request.content
        try:
            if content.is_eof():  # all here already (most bodies): taken as it is
                body = content.read_nowait()
                if len(body) > self.max_body_bytes:  # not said in advance (chunked)
                    raise self._too_large()
            else:
                async with asyncio.timeout(self.body_seconds):
                    body = await request.read()
        except TimeoutError:
            raise Refused(
                Failure.BODY_TIMEOUT,
                f"the request body did not arrive within {self.body_seconds:g} s",
                close=True,
            ) from None
        except web.HTTPRequestEntityTooLarge:
            raise self._too_large() from None
        except RequestPayloadError:
            raise Refused(
                Failure.BAD_REQUEST, "the request body is malformed HTTP", close=True
            ) from None
        values = json_values(body)
        if values > MAX_JSON_VALUES:
            raise Refused(
                Failure.BAD_REQUEST, f"the request body holds over {MAX_JSON_VALUES} JSON values"
            )
        if values < COSTLY_JSON_VALUES:
            return body, model_of(body)
        async with self._costly:
            try:
                return body, model_of(body)
            finally:
                await asyncio.sleep(0)  # the loop's other work runs before the next one
