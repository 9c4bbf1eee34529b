"""Fetching the lab CA certificate from a join listener, trusting only the token's pin.

A joining node has no CA certificate yet, only the CA fingerprint from its join token.
It opens a TLS connection without PKI verification, reads the certificate chain the
listener presents, and accepts the CA certificate in it only if its SHA-256 equals the
pinned fingerprint and it issued the listener's own (node) certificate. The TLS
handshake has already proven that the listener holds the leaf's private key, so after
these checks the joiner knows it talks to a node of the pinned CA and can send it the
token secret.

For this to work the join listener must present its chain, not just its leaf, and must
not require a client certificate (the joiner has none yet): serve
`server_certificate_chain(bundle)` (leaf PEM followed by the CA PEM), e.g.
`grpc.ssl_server_credentials([(bundle.key_pem, server_certificate_chain(bundle))],
require_client_auth=False)`.

The functions here block; call them from a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import _ssl
import hashlib
import socket
import ssl
from collections.abc import Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from murmur.certs.errors import CaPinMismatchError, IdentityError, JoinUnreachableError
from murmur.certs.identity import IdentityBundle, identity_from_certificate, is_ca_certificate
from murmur.certs.roles import Role

__all__ = ["fetch_pinned_ca_certificate", "server_certificate_chain"]


def server_certificate_chain(bundle: IdentityBundle) -> bytes:
    """The certificate chain a join listener must serve: leaf PEM, then CA PEM.

    Joiners find the pinned CA in this chain (see `fetch_pinned_ca_certificate`).
    """
    return bundle.certificate_chain_pem + bundle.ca_certificate_pem


def fetch_pinned_ca_certificate(
    host: str, port: int, fingerprint: str, *, timeout: float = 5.0
) -> bytes:
    """Connect to a join listener and return the CA certificate the token pins.

    Args:
        host: the listener's host name or IP address.
        port: the listener's port.
        fingerprint: lowercase hex SHA-256 of the CA certificate's DER (from the token).
        timeout: seconds allowed for connecting and for the TLS handshake each.

    Returns:
        The pinned CA certificate, PEM.

    Raises:
        JoinUnreachableError: the connection or the TLS handshake failed or timed out.
        CaPinMismatchError: the listener does not present the pinned CA, or its own
            certificate is not a node certificate issued by that CA.
    """
    pin = fingerprint.strip().lower().replace(":", "")
    where = _format_address(host, port)
    chain = _fetch_unverified_chain(host, port, where, timeout)
    mismatch = f"the node at {where} does not present the CA pinned in the token"
    if not chain:
        raise CaPinMismatchError(f"{mismatch} (it sent no certificate)")
    pinned = next((der for der in chain if hashlib.sha256(der).hexdigest() == pin), None)
    if pinned is None:
        raise CaPinMismatchError(mismatch)
    try:
        ca_certificate = x509.load_der_x509_certificate(pinned)
        leaf = x509.load_der_x509_certificate(chain[0])
    except ValueError:
        raise CaPinMismatchError(f"{mismatch} (it sent a malformed certificate)") from None
    if not is_ca_certificate(ca_certificate):
        raise CaPinMismatchError(f"{mismatch} (the pinned certificate is not a CA)")
    try:
        leaf.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise CaPinMismatchError(
            f"{mismatch} (its own certificate was not issued by the pinned CA)"
        ) from None
    try:
        role = identity_from_certificate(chain[0]).role
    except IdentityError:
        role = None
    if role is not Role.NODE:
        raise CaPinMismatchError(f"{mismatch} (its own certificate is not a node certificate)")
    return ca_certificate.public_bytes(serialization.Encoding.PEM)


def _fetch_unverified_chain(host: str, port: int, where: str, timeout: float) -> list[bytes]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # We authenticate the server by the token's pin below, not by a trust store.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # gRPC servers may insist on HTTP/2 being negotiated before they finish with us.
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as connection,
        ):
            return _unverified_chain_der(connection)
    except ssl.SSLError as error:
        raise JoinUnreachableError(
            f"TLS handshake with the join listener at {where} failed: {error.reason or error}"
        ) from error
    except TimeoutError as error:
        raise JoinUnreachableError(
            f"the join listener at {where} did not answer within {timeout:g} s"
        ) from error
    except OSError as error:
        raise JoinUnreachableError(
            f"cannot reach the join listener at {where}: {error.strerror or error}"
        ) from error


def _unverified_chain_der(connection: ssl.SSLSocket) -> list[bytes]:
    """The peer's chain as sent, as DER, on every Python we support.

    Python 3.13 has `SSLSocket.get_unverified_chain()` (DER bytes); 3.10 to 3.12 only
    have it on the private `_sslobj` (`_ssl.Certificate` objects).
    """
    public = getattr(connection, "get_unverified_chain", None)
    if public is not None:
        chain: Iterable[object] | None = public()
    else:
        chain = connection._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
    if chain is None:
        return []
    return [_as_der(element) for element in chain]


def _as_der(element: object) -> bytes:
    if isinstance(element, bytes):
        return element
    public_bytes = getattr(element, "public_bytes", None)
    if public_bytes is None:
        raise TypeError(f"unexpected certificate type in TLS chain: {type(element).__name__}")
    der = public_bytes(_ssl.ENCODING_DER)
    if not isinstance(der, bytes):
        raise TypeError(f"unexpected DER type in TLS chain: {type(der).__name__}")
    return der


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
