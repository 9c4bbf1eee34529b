"""Errors raised by the node's local store.

Every error the store raises on purpose is a ``StoreError``; callers (the daemon's
error-mapping interceptor, the CLI) catch these, never ``sqlite3`` exceptions, which
are translated here at the boundary::

    StoreError
    ├── StoreOpenError          the file or its directory cannot be opened for writing
    ├── StoreCorruptError       the file is not SQLite, or its pages are damaged
    ├── StoreVersionError       the file was written by a newer murmur
    ├── StoreClosedError        the store was used after close()
    ├── RecordNotFoundError     no dataset / run with that key
    ├── DatasetExistsError      a dataset with that name is already registered
    ├── BackupError             a backup cannot be made, read or put in place
    │   └── BackupCorruptError  a file is not a backup, or not the one its manifest says
    └── JoinTokenError          a join token was refused
        ├── TokenUnknownError   no such token, or the secret does not match (same error)
        ├── TokenUsedError      the token was already used
        ├── TokenExpiredError   the token is past its expiry
        └── TokenExistsError    a token with that id is already stored
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


class StoreError(Exception):
    """Base class of every error the store raises on purpose."""


class StoreOpenError(StoreError):
    """The store file or its directory cannot be opened for reading and writing."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot open store at {path}: {reason}")
        self.path = path
        self.reason = reason


class StoreCorruptError(StoreError):
    """The file is not an SQLite database, or SQLite found damaged pages in it."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(
            f"store at {path} is not a valid SQLite database or is damaged ({detail}); "
            "move it aside and restore it from a backup"
        )
        self.path = path
        self.detail = detail


class StoreVersionError(StoreError):
    """The file's schema is newer than this build of murmur knows how to read."""

    def __init__(self, path: Path, found_version: int, known_version: int) -> None:
        super().__init__(
            f"store at {path} was written by a newer murmur (schema version "
            f"{found_version}; this one knows up to {known_version}): run that murmur, "
            "or a newer one, on it"
        )
        self.path = path
        self.found_version = found_version
        self.known_version = known_version


class StoreClosedError(StoreError):
    """A method was called after the store was closed (typically during shutdown)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"store at {path} is closed")
        self.path = path


class RecordNotFoundError(StoreError):
    """No record of the given kind has the given key."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"no {kind} {key!r} in this node's store")
        self.kind = kind
        self.key = key


class DatasetExistsError(StoreError):
    """A dataset with this name is already registered on this node."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"dataset {name!r} is already registered on this node; choose another --name"
        )
        self.name = name


class BackupError(StoreError):
    """A backup cannot be made, read or put in place; the message says why."""


class BackupCorruptError(BackupError):
    """Not a backup, or one whose files do not match its manifest: damaged,
    truncated or tampered with. Nothing of it is restored."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path} is not an intact murmur backup: {detail}")
        self.path = path
        self.detail = detail


class JoinTokenError(StoreError):
    """A join token was refused; the subclass says why."""


class TokenUnknownError(JoinTokenError):
    """No such token, or a wrong secret: deliberately one error, so neither is revealed."""

    def __init__(self, token_id: str) -> None:
        super().__init__(
            f"join token {token_id!r} is not valid; check it was copied whole, "
            "or create a new one with `murmur token create`"
        )
        self.token_id = token_id


class TokenUsedError(JoinTokenError):
    """The token was already consumed; tokens admit exactly one node."""

    def __init__(self, token_id: str, used_by: str, used_at: datetime) -> None:
        super().__init__(
            f"join token {token_id!r} was already used by {used_by!r} at "
            f"{used_at.isoformat()}; create a new one with `murmur token create`"
        )
        self.token_id = token_id
        self.used_by = used_by
        self.used_at = used_at


class TokenExpiredError(JoinTokenError):
    """The token's expiry has passed."""

    def __init__(self, token_id: str, expired_at: datetime) -> None:
        super().__init__(
            f"join token {token_id!r} expired at {expired_at.isoformat()}; "
            "create a new one with `murmur token create`"
        )
        self.token_id = token_id
        self.expired_at = expired_at


class TokenExistsError(JoinTokenError):
    """A token with this id is already stored (ids are random, so this is a bug)."""

    def __init__(self, token_id: str) -> None:
        super().__init__(f"a join token with id {token_id!r} already exists")
        self.token_id = token_id
