"""API keys for the model router, in the replicated control state.

A key is ``mur_<id>_<secret>``. The node that takes ``CreateApiKey`` makes it, gives
it to its creator once, and commits only the id and the SHA-256 of the secret
(``CreateApiKey``), so the key is in no log, snapshot, store or audit entry. Every
node's router checks keys against these hashes (node/router/keys.py): a voter from
its own replica of this table, any other node from a copy it pulls from a voter
(node/router/key_sync.py).

Why a plain SHA-256 and not a password hash (bcrypt, argon2): those are slow on
purpose, to make guessing a low-entropy password from its hash costly. A key's
secret is 32 random bytes (``secrets.token_urlsafe(32)``): no one can guess it from
its hash however fast the hash, and a fast one lets every request be checked in a
microsecond.

Rules (pure, like the rest of the state: every time is the command's):

- ``CreateApiKey``: a new key; its name unique among its owner's keys that are not
  revoked, its id unique; at most ``MAX_KEYS_PER_OWNER`` keys an owner and
  ``MAX_KEYS`` in all. A revoked or expired key is forgotten (with its usage)
  ``FORGET_AFTER_US`` after it ended, at the next create.
- ``RevokeApiKey``: its owner or an admin; revoking a revoked key changes nothing.
- ``RecordApiKeyUsage``: a router's counts since its last flush are added to each
  key's (a key since forgotten is skipped). A flush whose (origin, incarnation)
  already had a ``seq`` as high is a retry and is skipped: one flush counts once.

``revision`` is the log index of the last create or revoke: what a router that pulls
the table compares (usage does not move it).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace

from murmur.node.control.queue.codec import ControlSnapshotError
from murmur.node.control.queue.commands import (
    MAX_USAGE_DELTAS,
    CreateApiKey,
    RecordApiKeyUsage,
    RevokeApiKey,
)
from murmur.node.control.queue.convert import timestamp_us
from murmur.node.control.queue.results import ApplyResult, ErrorKind, refused
from murmur.v1 import apikeys_pb2

MAX_KEYS = 10_000
"""Keys the table holds at most (revoked ones until forgotten): bounds every router's
copy and the snapshot."""
MAX_KEYS_PER_OWNER = 200
"""Keys one user holds at most (revoked ones until forgotten), so no member fills
the table for everyone."""
MAX_MODELS = 64
MAX_MODEL_CHARS = 256
MAX_RPM = 1_000_000
FORGET_AFTER_US = 30 * 24 * 3600 * 1_000_000
"""A revoked or expired key (and its usage) is forgotten this long after it ended."""

KEY_PREFIX = "mur_"
KEY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
KEY_ID_RE = re.compile(r"[0-9a-f]{12}")
"""A key's id: 12 lowercase hex digits (48 random bits; a clash is refused)."""
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def new_key() -> tuple[str, str, str]:
    """A new key: (its id, its secret, the whole key ``mur_<id>_<secret>``)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{KEY_PREFIX}{key_id}_{secret}"


def parse_key(text: str) -> tuple[str, str] | None:
    """(id, secret) of a whole key; None when ``text`` is not shaped like one."""
    if not text.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = text[len(KEY_PREFIX) :].partition("_")
    if not sep or not KEY_ID_RE.fullmatch(key_id) or not 0 < len(secret) <= 128:
        return None
    return key_id, secret


def secret_sha256(secret: str) -> str:
    """The hash the log keeps of a key's secret (lowercase hex): see the module
    docstring for why a plain SHA-256 suffices."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One key as the log made it: never its secret."""

    id: str
    name: str
    owner: str
    secret_sha256: str
    models: tuple[str, ...]
    """The models it may call; empty: every one."""
    rpm: int
    """Requests per minute, per router; 0: no limit."""
    created_at_us: int
    expires_at_us: int
    """0: never."""
    revoked_at_us: int = 0
    revoked_by: str = ""
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_used_at_us: int = 0

    def ended_at_us(self) -> int:
        """When the key stopped working for good (revoked or expired); 0: it has not,
        or it expires later (time is the caller's)."""
        ends = [t for t in (self.revoked_at_us, self.expires_at_us) if t]
        return min(ends) if ends else 0

    def usable(self, now_us: int) -> bool:
        """Not revoked, and not expired at ``now_us``."""
        return not self.revoked_at_us and not (self.expires_at_us and now_us >= self.expires_at_us)


def create_error(command: CreateApiKey) -> str | None:
    """Why a create's fields are not valid (the node checks a request with this before
    it commits, and the state again); None when they are."""
    if not KEY_ID_RE.fullmatch(command.id):
        return "an API key's id is 12 lowercase hex digits"
    if not command.owner:
        return "an API key needs an owner"
    if not KEY_NAME_RE.fullmatch(command.name):
        return (
            f"the key name {command.name[:64]!r} is invalid: use 1 to 63 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    if not _SHA256_RE.fullmatch(command.secret_sha256):
        return "an API key's hash is a SHA-256 in lowercase hex"
    if len(command.models) > MAX_MODELS:
        return f"a key names at most {MAX_MODELS} models"
    for model in command.models:
        if not model or len(model) > MAX_MODEL_CHARS or not model.isprintable():
            return f"the model name {model[:64]!r} is empty, too long or not printable"
    if len(set(command.models)) != len(command.models):
        return "the key names a model twice"
    if not 0 <= command.rpm <= MAX_RPM:
        return f"rpm must be between 0 (no limit) and {MAX_RPM}"
    if command.expires_at_us and command.expires_at_us <= command.at_us:
        return "the key would expire before it is created: give a time in the future"
    return None


class ApiKeyTable:
    """The keys the log created and revoked, with their usage."""

    def __init__(self) -> None:
        self._keys: dict[str, ApiKeyRecord] = {}
        self._origins: dict[str, tuple[str, int]] = {}
        """origin (a router's node) → (its incarnation, the last seq applied from it)."""
        self.revision = 0

    # ------------------------------------------------------------------ commands

    def create(self, index: int, command: CreateApiKey) -> ApplyResult:
        error = create_error(command)
        if error is not None:
            return refused(ErrorKind.INVALID, error)
        self._forget_ended(command.at_us)
        if command.id in self._keys:
            return refused(ErrorKind.ALREADY_EXISTS, f"API key id {command.id} is taken")
        owned = [key for key in self._keys.values() if key.owner == command.owner]
        if any(key.name == command.name and not key.revoked_at_us for key in owned):
            return refused(
                ErrorKind.ALREADY_EXISTS,
                f"{command.owner} already has an API key named {command.name!r}; revoke "
                "it or choose another name",
            )
        if len(owned) >= MAX_KEYS_PER_OWNER:
            return refused(
                ErrorKind.FAILED_PRECONDITION,
                f"{command.owner} holds {MAX_KEYS_PER_OWNER} API keys (revoked ones are "
                "kept 30 days): revoke some first",
            )
        if len(self._keys) >= MAX_KEYS:
            return refused(ErrorKind.FAILED_PRECONDITION, f"the cluster holds {MAX_KEYS} API keys")
        self._keys[command.id] = ApiKeyRecord(
            id=command.id,
            name=command.name,
            owner=command.owner,
            secret_sha256=command.secret_sha256,
            models=command.models,
            rpm=command.rpm,
            created_at_us=command.at_us,
            expires_at_us=command.expires_at_us,
        )
        self.revision = index
        return ApplyResult(ok=True)

    def revoke(self, index: int, command: RevokeApiKey) -> ApplyResult:
        key = self._keys.get(command.id)
        if key is None:
            return refused(ErrorKind.NOT_FOUND, f"no API key {command.id[:64]!r}")
        if key.owner != command.by and not command.is_admin:
            return refused(
                ErrorKind.PERMISSION_DENIED,
                f"API key {key.id} is {key.owner}'s; only they or an admin may revoke it",
            )
        if key.revoked_at_us:
            return ApplyResult(ok=True)  # revoked already (a retried call)
        self._keys[key.id] = replace(key, revoked_at_us=command.at_us, revoked_by=command.by)
        self.revision = index
        return ApplyResult(ok=True)

    def record_usage(self, command: RecordApiKeyUsage) -> ApplyResult:
        if not command.origin or not command.incarnation or command.seq <= 0:
            return refused(ErrorKind.INVALID, "a usage flush names its origin and a sequence")
        if len(command.deltas) > MAX_USAGE_DELTAS:
            return refused(ErrorKind.INVALID, f"at most {MAX_USAGE_DELTAS} keys per usage flush")
        incarnation, last = self._origins.get(command.origin, ("", 0))
        if incarnation == command.incarnation and command.seq <= last:
            return ApplyResult(ok=True)  # applied before: a retried flush
        self._origins[command.origin] = (command.incarnation, command.seq)
        for delta in command.deltas:
            key = self._keys.get(delta.id)
            if key is None:
                continue  # forgotten since
            self._keys[key.id] = replace(
                key,
                requests=key.requests + delta.requests,
                prompt_tokens=key.prompt_tokens + delta.prompt_tokens,
                completion_tokens=key.completion_tokens + delta.completion_tokens,
                last_used_at_us=max(key.last_used_at_us, command.at_us),
            )
        return ApplyResult(ok=True)

    def _forget_ended(self, now_us: int) -> None:
        stale = [
            key.id
            for key in self._keys.values()
            if key.ended_at_us() and key.ended_at_us() + FORGET_AFTER_US <= now_us
        ]
        for key_id in stale:
            del self._keys[key_id]

    # ------------------------------------------------------------------ queries

    def get(self, key_id: str) -> ApiKeyRecord | None:
        return self._keys.get(key_id)

    def find(self, owner: str, name: str) -> ApiKeyRecord | None:
        """``owner``'s key of that name: the one not revoked, else the latest revoked."""
        found = [k for k in self._keys.values() if k.owner == owner and k.name == name]
        found.sort(key=lambda k: (not k.revoked_at_us, k.created_at_us))
        return found[-1] if found else None

    def records(self, owner: str | None = None) -> list[ApiKeyRecord]:
        """Every key (of ``owner``), by owner, name, then creation."""
        return sorted(
            (k for k in self._keys.values() if owner is None or k.owner == owner),
            key=lambda k: (k.owner, k.name, k.created_at_us, k.id),
        )

    def __len__(self) -> int:
        return len(self._keys)

    # ---------------------------------------------------------------- snapshots

    def frozen(self) -> FrozenApiKeys | None:
        """The table as it is now, for a snapshot encoded later (in another thread);
        None when it holds nothing (the snapshot then says no format 36)."""
        if not self._keys and not self._origins:
            return None
        return FrozenApiKeys(
            keys=tuple(self._keys[key_id] for key_id in sorted(self._keys)),
            origins=tuple(sorted(self._origins.items())),
            revision=self.revision,
        )

    @classmethod
    def from_message(cls, message: apikeys_pb2.ControlApiKeys) -> ApiKeyTable:
        """The table a snapshot holds.

        Raises:
            ControlSnapshotError: a key or an origin twice.
        """
        table = cls()
        for key in message.keys:
            if key.id in table._keys:
                raise ControlSnapshotError("the snapshot holds an API key twice")
            table._keys[key.id] = record_of(key)
        for origin in message.origins:
            if origin.origin in table._origins:
                raise ControlSnapshotError("the snapshot holds an API key usage origin twice")
            table._origins[origin.origin] = (origin.incarnation, origin.seq)
        table.revision = message.revision
        return table


@dataclass(frozen=True, slots=True)
class FrozenApiKeys:
    keys: tuple[ApiKeyRecord, ...]
    origins: tuple[tuple[str, tuple[str, int]], ...]
    revision: int

    def message(self) -> apikeys_pb2.ControlApiKeys:
        return apikeys_pb2.ControlApiKeys(
            keys=control_messages(self.keys, with_usage=True),
            origins=[
                apikeys_pb2.ControlApiKeyOrigin(origin=origin, incarnation=incarnation, seq=seq)
                for origin, (incarnation, seq) in self.origins
            ],
            revision=self.revision,
        )


def control_messages(
    records: Iterable[ApiKeyRecord], *, with_usage: bool
) -> list[apikeys_pb2.ControlApiKey]:
    """Keys as the snapshot (``with_usage``) or a router's pulled table holds them."""
    return [
        apikeys_pb2.ControlApiKey(
            id=key.id,
            name=key.name,
            owner=key.owner,
            secret_sha256=key.secret_sha256,
            models=key.models,
            rpm=key.rpm,
            created_at_us=key.created_at_us,
            expires_at_us=key.expires_at_us,
            revoked_at_us=key.revoked_at_us,
            revoked_by=key.revoked_by,
            requests=key.requests if with_usage else 0,
            prompt_tokens=key.prompt_tokens if with_usage else 0,
            completion_tokens=key.completion_tokens if with_usage else 0,
            last_used_at_us=key.last_used_at_us if with_usage else 0,
        )
        for key in records
    ]


def hashes_answer(table: ApiKeyTable, known_revision: int) -> apikeys_pb2.ListApiKeyHashesResponse:
    """A voter's answer to a router's pull (node/router/key_sync.py): the whole table
    without usage, or ``unchanged`` when the router holds this revision already."""
    if known_revision == table.revision:
        return apikeys_pb2.ListApiKeyHashesResponse(revision=table.revision, unchanged=True)
    return apikeys_pb2.ListApiKeyHashesResponse(
        revision=table.revision, keys=control_messages(table.records(), with_usage=False)
    )


def record_of(message: apikeys_pb2.ControlApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=message.id,
        name=message.name,
        owner=message.owner,
        secret_sha256=message.secret_sha256,
        models=tuple(message.models),
        rpm=message.rpm,
        created_at_us=message.created_at_us,
        expires_at_us=message.expires_at_us,
        revoked_at_us=message.revoked_at_us,
        revoked_by=message.revoked_by,
        requests=message.requests,
        prompt_tokens=message.prompt_tokens,
        completion_tokens=message.completion_tokens,
        last_used_at_us=message.last_used_at_us,
    )


def api_key_message(key: ApiKeyRecord) -> apikeys_pb2.ApiKey:
    """The client API's view of a key: never its secret, nor its hash."""
    message = apikeys_pb2.ApiKey(
        id=key.id,
        name=key.name,
        owner=key.owner,
        models=key.models,
        rpm=key.rpm,
        created_at=timestamp_us(key.created_at_us),
        revoked_by=key.revoked_by,
        usage=apikeys_pb2.ApiKeyUsage(
            requests=key.requests,
            prompt_tokens=key.prompt_tokens,
            completion_tokens=key.completion_tokens,
        ),
    )
    if key.expires_at_us:
        message.expires_at.CopyFrom(timestamp_us(key.expires_at_us))
    if key.revoked_at_us:
        message.revoked_at.CopyFrom(timestamp_us(key.revoked_at_us))
    if key.last_used_at_us:
        message.usage.last_used_at.CopyFrom(timestamp_us(key.last_used_at_us))
    return message
