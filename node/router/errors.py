"""How the router words a refusal or a failure: one table from each kind to its HTTP
status and OpenAI's error ``type`` and ``code``, and the body OpenAI's API would send.

OpenAI clients read the status to decide what to do (the ``openai`` package retries
408, 429 and 5xx, never 400 or 404) and show the message to a person, so every
refusal goes through :func:`failure_response` with a :class:`Failure`: a status is chosen here
and nowhere else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Shape:
    """What a client sees of one kind of failure."""

    status: int
    kind: str
    """OpenAI's ``type``: ``invalid_request_error`` (the client's fault), ``api_error``
    (the service's), ``permission_error`` or ``rate_limit_error`` (the key's)."""
    code: str | None


class Failure(enum.Enum):
    """Every way a routed request ends without a replica's answer."""

    BAD_REQUEST = Shape(400, "invalid_request_error", None)
    """Not a JSON object, no ``model`` or not a string, too many JSON values."""
    MODEL_NOT_FOUND = Shape(404, "invalid_request_error", "model_not_found")
    BODY_TIMEOUT = Shape(408, "invalid_request_error", "request_timeout")
    """The body did not arrive in time (a client too slow, or one holding the
    connection on purpose)."""
    BODY_TOO_LARGE = Shape(413, "invalid_request_error", None)
    UPSTREAM_FAILED = Shape(502, "api_error", "upstream_failed")
    """Every ready replica failed before answering, or one failed mid-answer."""
    NO_READY_REPLICA = Shape(503, "api_error", "no_ready_replica")
    BUSY = Shape(503, "api_error", "router_busy")
    """The router holds as many request bodies as it may: try again shortly."""
    UPSTREAM_TIMEOUT = Shape(504, "api_error", "upstream_timeout")
    """The replica took the request but its answer did not begin in time."""
    # API keys (node/router/keys.py).
    MISSING_API_KEY = Shape(401, "invalid_request_error", "missing_api_key")
    """The router requires a key and the request brought none."""
    INVALID_API_KEY = Shape(401, "invalid_request_error", "invalid_api_key")
    """Not a key, or one no key of the cluster's matches (unknown id or wrong secret
    alike, so nobody learns which ids exist)."""
    REVOKED_API_KEY = Shape(401, "invalid_request_error", "revoked_api_key")
    EXPIRED_API_KEY = Shape(401, "invalid_request_error", "expired_api_key")
    MODEL_NOT_ALLOWED = Shape(403, "permission_error", "model_not_allowed")
    """The key may not use the model the request names."""
    RATE_LIMITED = Shape(429, "rate_limit_error", "rate_limit_exceeded")
    """The key is over its requests per minute on this router (with ``Retry-After``)."""
    KEYS_UNKNOWN = Shape(503, "api_error", "keys_unknown")
    """The router has not learnt the cluster's key table yet (a node off the log, just
    started): it cannot tell a good key from a revoked one."""


def openai_error(status: int, message: str, kind: str, code: str | None = None) -> web.Response:
    """An error as OpenAI's API words one."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status)


def failure_response(
    failure: Failure, message: str, *, close: bool = False, retry_after: int | None = None
) -> web.Response:
    """The answer for ``failure``; ``close`` ends the connection after it (a client
    whose body never came must not keep its connection); ``retry_after``: seconds a
    client should wait (``Retry-After``)."""
    shape = failure.value
    response = openai_error(shape.status, message, shape.kind, shape.code)
    if close:
        response.force_close()
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response
