"""Join tokens: how a new server finds the cluster and proves it was invited.

A token carries the lab CA's fingerprint (so the joiner can authenticate the cluster
before trusting anything it says), a token id and a one-time secret (so the cluster can
authenticate the joiner), and the port of the join listener. The cluster stores only
`hash_secret(secret)`, never the secret itself.

Wire form: `murmur1.` followed by the unpadded base64url of the compact JSON object
`{"fp": ..., "id": ..., "s": ..., "jp": ...}`. The version lives in the prefix, so a
future format gets a new prefix and the fields of this one never change meaning.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field

from murmur.certs.errors import TokenFormatError

__all__ = ["TOKEN_PREFIX", "JoinToken", "hash_secret", "new_join_token", "secret_matches"]

TOKEN_PREFIX = "murmur1."

_MAX_TOKEN_LENGTH = 1024
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_TOKEN_ID = re.compile(r"[0-9a-f]{8,64}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{43,128}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_FIELDS = {"fp", "id", "s", "jp"}


@dataclass(frozen=True)
class JoinToken:
    """What a joining node needs to find, authenticate and be admitted to a cluster."""

    ca_fingerprint: str
    """Lowercase hex SHA-256 of the lab CA certificate's DER."""
    token_id: str
    """Lowercase hex; names the token in the cluster's token table and in the audit log."""
    secret: str = field(repr=False)
    """Base64url, at least 32 bytes of randomness; shown once, stored only hashed."""
    join_port: int
    """TCP port of the join listener on the node that issued the token."""

    def __post_init__(self) -> None:
        _check_fields(self)

    def encode(self) -> str:
        """The token as one copy-pasteable string (`murmur1.` + base64url JSON)."""
        document = {
            "fp": self.ca_fingerprint,
            "id": self.token_id,
            "s": self.secret,
            "jp": self.join_port,
        }
        payload = json.dumps(document, separators=(",", ":")).encode("ascii")
        return TOKEN_PREFIX + base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, text: str) -> JoinToken:
        """Parse a token string; surrounding whitespace is ignored.

        Raises:
            TokenFormatError: for any string that is not a well-formed token, and for
                nothing else.
        """
        document = _decode_document(text.strip() if isinstance(text, str) else text)
        fingerprint, token_id = document["fp"], document["id"]
        secret, join_port = document["s"], document["jp"]
        if not (
            isinstance(fingerprint, str)
            and isinstance(token_id, str)
            and isinstance(secret, str)
            and isinstance(join_port, int)
            and not isinstance(join_port, bool)
        ):
            raise TokenFormatError("not a murmur join token: a field has the wrong type")
        return cls(
            ca_fingerprint=fingerprint, token_id=token_id, secret=secret, join_port=join_port
        )


def new_join_token(*, ca_fingerprint: str, join_port: int) -> JoinToken:
    """Make a fresh token with a random id and a 32-byte random secret.

    Raises:
        TokenFormatError: the fingerprint is not 64 hex digits or the port is invalid.
    """
    return JoinToken(
        ca_fingerprint=ca_fingerprint.lower(),
        token_id=secrets.token_hex(6),
        secret=secrets.token_urlsafe(32),
        join_port=join_port,
    )


def hash_secret(secret: str) -> str:
    """The lowercase hex SHA-256 of a token secret: what the cluster stores."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Whether `secret` hashes to `stored_hash`, compared in constant time."""
    return hmac.compare_digest(
        hash_secret(secret).encode("ascii"), stored_hash.encode("utf-8", "surrogatepass")
    )


def _decode_document(text: object) -> dict[str, object]:
    if not isinstance(text, str):
        raise TokenFormatError(f"not a murmur join token: expected text, got {type(text).__name__}")
    if not text.startswith(TOKEN_PREFIX):
        raise TokenFormatError(f"not a murmur join token: it does not start with {TOKEN_PREFIX!r}")
    if len(text) > _MAX_TOKEN_LENGTH:
        raise TokenFormatError(
            f"not a murmur join token: longer than {_MAX_TOKEN_LENGTH} characters"
        )
    body = text.removeprefix(TOKEN_PREFIX)
    if _BASE64URL.fullmatch(body) is None:
        raise TokenFormatError("not a murmur join token: the body is not base64url")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        document = json.loads(payload.decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError):
        raise TokenFormatError("not a murmur join token: the body is not base64url JSON") from None
    if not isinstance(document, dict) or set(document) != _FIELDS:
        raise TokenFormatError(
            "not a murmur join token: expected exactly the fields fp, id, s and jp"
        )
    return document


def _check_fields(token: JoinToken) -> None:
    if not isinstance(token.ca_fingerprint, str) or not _FINGERPRINT.fullmatch(
        token.ca_fingerprint
    ):
        raise TokenFormatError(
            "not a murmur join token: the CA fingerprint is not 64 lowercase hex digits"
        )
    if not isinstance(token.token_id, str) or not _TOKEN_ID.fullmatch(token.token_id):
        raise TokenFormatError("not a murmur join token: the token id is not 8-64 hex digits")
    if not isinstance(token.secret, str) or not _SECRET.fullmatch(token.secret):
        raise TokenFormatError(
            "not a murmur join token: the secret is not 43-128 base64url characters"
        )
    port = token.join_port
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise TokenFormatError(f"not a murmur join token: join port {port!r} is not 1-65535")
