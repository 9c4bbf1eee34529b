"""Join tokens in the replicated control state: single use cluster-wide.

Any node records a token it creates (``CreateJoinToken``: only the SHA-256 of the
secret); a voter's join listener consumes it (``ConsumeJoinToken``) through the
leader before it hands the joiner its certificate. Voters apply entries in one
order, so of two joins with one token through two voters the first in log order
wins and the second is refused "already used", whichever voters they reached.

Pure, like the rest of the state: every time is the command's. A consume is
checked in this order, and a refusal changes nothing (a wrong secret does not
burn the token): unknown token, wrong secret, already used, expired, name
already joined. Tokens are forgotten ``FORGET_AFTER_US`` after they expire (at
the next create), so the table stays small.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from murmur.node.control.queue.codec import ControlSnapshotError
from murmur.node.control.queue.commands import ConsumeJoinToken, CreateJoinToken
from murmur.node.control.queue.results import ApplyResult, ErrorKind, refused
from murmur.v1 import trust_pb2

FORGET_AFTER_US = 7 * 24 * 3600 * 1_000_000
"""A token is forgotten this long after it expired (a used one's "already used by"
stays answerable meanwhile)."""

MAX_TOKENS = 10_000
"""Tokens the table holds at most (live ones); a create beyond it is refused."""


@dataclass(frozen=True, slots=True)
class JoinTokenEntry:
    token_id: str
    secret_sha256: str
    created_by: str
    created_at_us: int
    expires_at_us: int
    used_by: str = ""
    used_at_us: int = 0


def _time(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat()


class JoinTokenTable:
    """The join tokens the log created and consumed, and the names that joined."""

    def __init__(self) -> None:
        self._tokens: dict[str, JoinTokenEntry] = {}
        self._joined: set[str] = set()

    def create(self, command: CreateJoinToken) -> ApplyResult:
        if not command.token_id or len(command.secret_sha256) != 64:
            return refused(ErrorKind.INVALID, "a join token needs an id and a secret's SHA-256")
        if command.expires_at_us <= command.created_at_us:
            return refused(ErrorKind.INVALID, "a join token must expire after it is created")
        self._forget_expired(command.created_at_us)
        if command.token_id in self._tokens:
            return refused(
                ErrorKind.FAILED_PRECONDITION, f"join token {command.token_id!r} already exists"
            )
        if len(self._tokens) >= MAX_TOKENS:
            return refused(
                ErrorKind.FAILED_PRECONDITION,
                f"{MAX_TOKENS} join tokens are outstanding; wait for some to expire",
            )
        self._tokens[command.token_id] = JoinTokenEntry(
            token_id=command.token_id,
            secret_sha256=command.secret_sha256,
            created_by=command.created_by,
            created_at_us=command.created_at_us,
            expires_at_us=command.expires_at_us,
        )
        return ApplyResult(ok=True)

    def consume(self, command: ConsumeJoinToken) -> ApplyResult:
        token = self._tokens.get(command.token_id)
        if token is None:
            return refused(
                ErrorKind.NOT_FOUND,
                f"join token {command.token_id!r} is unknown to this cluster; "
                "create one with `murmur token create`",
            )
        if not hmac.compare_digest(token.secret_sha256, command.secret_sha256):
            return refused(
                ErrorKind.PERMISSION_DENIED,
                f"join token {command.token_id!r}: the secret does not match",
            )
        if token.used_by:
            return refused(
                ErrorKind.FAILED_PRECONDITION,
                f"join token {command.token_id!r} was already used by {token.used_by!r} at "
                f"{_time(token.used_at_us)}; create a new one with `murmur token create`",
            )
        if command.at_us >= token.expires_at_us:
            return refused(
                ErrorKind.FAILED_PRECONDITION,
                f"join token {command.token_id!r} expired at {_time(token.expires_at_us)}; "
                "create a new one with `murmur token create`",
            )
        if command.node_name in self._joined:
            return refused(
                ErrorKind.FAILED_PRECONDITION,
                f"a node named {command.node_name!r} already joined this cluster; start the "
                "new node with another --name",
            )
        self._tokens[command.token_id] = replace(
            token, used_by=command.node_name, used_at_us=command.at_us
        )
        self._joined.add(command.node_name)
        return ApplyResult(ok=True)

    def _forget_expired(self, now_us: int) -> None:
        stale = [
            token_id
            for token_id, token in self._tokens.items()
            if token.expires_at_us + FORGET_AFTER_US <= now_us
        ]
        for token_id in stale:
            del self._tokens[token_id]

    def get(self, token_id: str) -> JoinTokenEntry | None:
        return self._tokens.get(token_id)

    def has_joined(self, name: str) -> bool:
        """Whether a node of that name joined with a token (names are never reused)."""
        return name in self._joined

    def __len__(self) -> int:
        return len(self._tokens)

    # ---------------------------------------------------------------- snapshots

    def messages(self) -> list[trust_pb2.ControlJoinToken]:
        """The table for a snapshot, by token id; joined names ride on used tokens
        and on name-only entries (a token forgotten, its name kept)."""
        found = [
            trust_pb2.ControlJoinToken(
                token_id=t.token_id,
                secret_sha256=t.secret_sha256,
                created_by=t.created_by,
                created_at_us=t.created_at_us,
                expires_at_us=t.expires_at_us,
                used_by=t.used_by,
                used_at_us=t.used_at_us,
            )
            for t in sorted(self._tokens.values(), key=lambda t: t.token_id)
        ]
        named = {t.used_by for t in self._tokens.values()}
        found.extend(
            trust_pb2.ControlJoinToken(used_by=name) for name in sorted(self._joined - named)
        )
        return found

    @classmethod
    def from_messages(cls, messages: list[trust_pb2.ControlJoinToken]) -> JoinTokenTable:
        """The table a snapshot holds.

        Raises:
            ControlSnapshotError: a token id twice.
        """
        table = cls()
        for message in messages:
            if message.used_by:
                table._joined.add(message.used_by)
            if not message.token_id:
                continue
            if message.token_id in table._tokens:
                raise ControlSnapshotError("the snapshot holds a join token twice")
            table._tokens[message.token_id] = JoinTokenEntry(
                token_id=message.token_id,
                secret_sha256=message.secret_sha256,
                created_by=message.created_by,
                created_at_us=message.created_at_us,
                expires_at_us=message.expires_at_us,
                used_by=message.used_by,
                used_at_us=message.used_at_us,
            )
        return table
