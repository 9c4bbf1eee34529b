"""Who may use the router: API keys checked, model access lists, requests per minute.

A request's ``Authorization: Bearer mur_<id>_<secret>`` is checked against the key
table this node knows (``KeyBook``: from the control log, node/router/key_sync.py):
the id finds the key, the secret's SHA-256 must match its hash (compared in
constant time), and the key must be neither revoked nor expired (by this node's
clock). Any failure is 401, worded alike for an unknown id and a wrong secret so
that nobody learns which ids exist.

When is a key needed (``KeyGate.required``)? On a router that listens beyond
loopback, always; on loopback only when the node's config says so
(``router_require_keys``): a router on 127.0.0.1 is reached only from its own
machine, so ``murmur up`` and a lab's notebooks on that machine keep working
without one. A request that brings a key is checked whatever the rule: a wrong key
is 401 and a key's access list holds (403), so a client never believes it used a
key that was not looked at.

Requests per minute are a token bucket per key **on each router**: a key of 60 rpm
may send 60 a minute to each node's router. Routers do not share their counts
(that would cost a round trip per request); a lab that wants one cluster-wide rate
gives its users one router.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from murmur.node.control.queue.api_keys import ApiKeyRecord, parse_key
from murmur.node.router.errors import Failure, failure_response


@dataclass(frozen=True, slots=True)
class RouterKey:
    """What a router needs of a key."""

    id: str
    owner: str
    name: str
    digest: bytes
    """The SHA-256 of its secret (raw bytes, for ``hmac.compare_digest``)."""
    models: frozenset[str]
    """The models it may call; empty: every one."""
    rpm: int
    expires_at_us: int
    revoked: bool

    @classmethod
    def of(cls, record: ApiKeyRecord) -> RouterKey:
        try:
            digest = bytes.fromhex(record.secret_sha256)
        except ValueError:
            digest = b""  # not a hash (the log checks it is one): matches no secret
        return cls(
            id=record.id,
            owner=record.owner,
            name=record.name,
            digest=digest,
            models=frozenset(record.models),
            rpm=record.rpm,
            expires_at_us=record.expires_at_us,
            revoked=bool(record.revoked_at_us),
        )

    def allows(self, model: str) -> bool:
        """Whether the key may call ``model`` (an adapter, ``base:adapter``, is allowed
        when named itself or when its base model is)."""
        if not self.models:
            return True
        return model in self.models or model.partition(":")[0] in self.models


@dataclass(frozen=True, slots=True)
class KeyBook:
    """The keys a router knows, by id, as of ``revision`` (the log index of the
    last create or revoke); ``known`` is False until this node learnt the table."""

    keys: Mapping[str, RouterKey] = field(default_factory=dict)
    revision: int = 0
    known: bool = True

    @classmethod
    def of(cls, records: Iterable[ApiKeyRecord], revision: int) -> KeyBook:
        return cls({r.id: RouterKey.of(r) for r in records}, revision)


UNKNOWN_BOOK = KeyBook(known=False)
"""A router's book before it learnt the table (a node that follows no log, just
started): it refuses every key, for it cannot tell a good one from a revoked one."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Whom a request is from: a checked key, or nobody (``key`` None) on a router
    that does not require keys."""

    key: RouterKey | None

    def allows(self, model: str) -> bool:
        return self.key is None or self.key.allows(model)


ANONYMOUS = Caller(None)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused (its status and OpenAI ``type`` and ``code``: the
    ``failure``, node/router/errors.py)."""

    failure: Failure
    message: str
    retry_after: int | None = None
    """Seconds a client should wait (``Retry-After``)."""

    def response(self) -> web.Response:
        return failure_response(self.failure, self.message, retry_after=self.retry_after)


class TokenBuckets:
    """Requests per minute per key, on this router: a bucket of ``rpm`` tokens per
    key, refilled at ``rpm`` a minute; a request takes one or is refused.

    Bounded: one bucket per key that has a limit and sent a request, and buckets
    of keys no longer in the book are dropped (``keep_only``).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        """key id → (tokens, when they were counted)."""

    def take(self, key: RouterKey) -> int | None:
        """None when the key may send a request now (a token is taken); else the
        whole seconds until it may."""
        if not key.rpm:
            return None
        now = self._clock()
        rate = key.rpm / 60.0
        tokens, at = self._buckets.get(key.id, (float(key.rpm), now))
        tokens = min(float(key.rpm), tokens + (now - at) * rate)
        if tokens >= 1.0:
            self._buckets[key.id] = (tokens - 1.0, now)
            return None
        self._buckets[key.id] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / rate))

    def keep_only(self, ids: Iterable[str]) -> None:
        kept = set(ids)
        for key_id in [k for k in self._buckets if k not in kept]:
            del self._buckets[key_id]

    def __len__(self) -> int:
        return len(self._buckets)


class KeyGate:
    """Checks each request's key (see the module docstring).

    Args:
        book: the key table as this node knows it now (called per request).
        required: whether a request must bring a key.
        wall_clock: seconds since the epoch (expiry); monotonic: for the rate buckets.
    """

    def __init__(
        self,
        book: Callable[[], KeyBook],
        *,
        required: bool,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._book = book
        self.required = required
        self._wall_clock = wall_clock
        self._buckets = TokenBuckets(monotonic)
        self._bucket_revision = -1

    def authenticate(self, authorization: str | None) -> Caller | Refusal:
        """The caller an ``Authorization`` header names, or why it is refused."""
        if not authorization:
            if self.required:
                return Refusal(
                    Failure.MISSING_API_KEY,
                    "You didn't provide an API key: send it as 'Authorization: Bearer "
                    "KEY' (make one with `murmur apikey create`)",
                )
            return ANONYMOUS
        scheme, _, credential = authorization.strip().partition(" ")
        parsed = parse_key(credential.strip()) if scheme.lower() == "bearer" else None
        if parsed is None:
            return Refusal(
                Failure.INVALID_API_KEY,
                "Incorrect API key provided: a Murmur key reads 'Bearer mur_...' "
                "(make one with `murmur apikey create`)",
            )
        key_id, secret = parsed
        book = self._book()
        if not book.known:
            return Refusal(
                Failure.KEYS_UNKNOWN,
                "this router has not learnt the cluster's API keys yet; try again in a few seconds",
                retry_after=2,
            )
        key = book.keys.get(key_id)
        digest = hashlib.sha256(secret.encode()).digest()
        # Compared even for an unknown id, so both failures take the same time.
        matches = hmac.compare_digest(digest, key.digest if key is not None else bytes(32))
        if key is None or not matches:
            return Refusal(Failure.INVALID_API_KEY, "Incorrect API key provided")
        if key.revoked:
            return Refusal(Failure.REVOKED_API_KEY, f"API key {key.id} ({key.name}) was revoked")
        if key.expires_at_us and self._wall_clock() * 1e6 >= key.expires_at_us:
            return Refusal(Failure.EXPIRED_API_KEY, f"API key {key.id} ({key.name}) has expired")
        return Caller(key)

    def admit(self, caller: Caller, model: str) -> Refusal | None:
        """None when ``caller`` may send a request for ``model`` now (a token of its
        rate is taken); else why not (403: not its model; 429: over its rate)."""
        key = caller.key
        if key is None:
            return None
        if not key.allows(model):
            return Refusal(
                Failure.MODEL_NOT_ALLOWED,
                f"API key {key.id} ({key.name}) may not use the model {model!r}; it may "
                f"use {', '.join(sorted(key.models))}",
            )
        self._prune()
        wait = self._buckets.take(key)
        if wait is not None:
            return Refusal(
                Failure.RATE_LIMITED,
                f"API key {key.id} ({key.name}) is over its {key.rpm} requests per minute "
                f"on this router; retry in {wait} s",
                retry_after=wait,
            )
        return None

    def _prune(self) -> None:
        """Drops the buckets of keys no longer in the book (once per book revision)."""
        book = self._book()
        if book.revision != self._bucket_revision:
            self._buckets.keep_only(book.keys)
            self._bucket_revision = book.revision
