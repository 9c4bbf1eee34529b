"""Who is calling: the identity in the peer's verified client certificate.

The TLS handshake already proved the certificate chains to the lab CA and is
within its validity period (the server requires client certificates); this
module only reads the name and role out of it and makes them available to the
handler through a context variable.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any

import grpc

from murmur.certs import CertificateIdentity, IdentityError, identity_from_certificate

_current: contextvars.ContextVar[CertificateIdentity] = contextvars.ContextVar("murmur_caller")


def current_caller() -> CertificateIdentity:
    """The caller of the RPC being handled. Only valid inside a handler."""
    return _current.get()


def set_current_caller(caller: CertificateIdentity) -> contextvars.Token[CertificateIdentity]:
    return _current.set(caller)


def reset_current_caller(token: contextvars.Token[CertificateIdentity]) -> None:
    _current.reset(token)


def caller_from_context(context: grpc.aio.ServicerContext[Any, Any]) -> CertificateIdentity:
    """Reads the caller from the connection's auth context.

    Raises:
        IdentityError: no client certificate, or one without a usable name/role.
    """
    auth = context.auth_context()
    pems = list(auth.get("x509_pem_cert") or [])
    if not pems:
        raise IdentityError("no client certificate: every call needs a certificate from the lab CA")
    return _identity_of(bytes(pems[0]))


@functools.lru_cache(maxsize=4096)
def _identity_of(pem: bytes) -> CertificateIdentity:
    """Parsing a certificate costs more than a gossip message's whole handling, and
    a peer presents the same one on every call; the identity is immutable. A
    certificate that fails to parse raises and is not cached."""
    return identity_from_certificate(pem)
