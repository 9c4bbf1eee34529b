"""TLS for a router that listens beyond loopback: the node's own certificate from the
lab CA, and no client certificate asked (OpenAI clients send a bearer key instead).

A node certificate may serve TLS (its extended key usage says so) and names the
node's addresses (node.murmur's SANs: ``localhost``, the listen and advertise
addresses), which is where clients reach the router too; :func:`names_of` lists
them so the daemon can say when the router's own address is not among them.

The certificate is renewed while the node runs (node/identity/renewal.py). The
router serves the new one from the next handshake on, as the gRPC listeners do
(node/api/tls.py): at each ClientHello (Python calls the SNI callback for every
handshake, with ``None`` when the client sent no name) it compares the certificates'
generation with the one its context was built from; when it moved, a context is
built from the new bundle and the handshake handed to it. Connections already open
keep the certificate they started with.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import tempfile
from pathlib import Path
from typing import Protocol

from cryptography import x509

from murmur.certs import IdentityBundle

_log = logging.getLogger("murmur.router")

HANDSHAKE_SECONDS = 10.0
"""How long a client has to finish its TLS handshake (one that connects and says
nothing holds a file descriptor until then)."""


class CertificateSource(Protocol):
    """The node's certificate as it is now, and how many times it was replaced
    (node/api/tls.py's ``ServerCertificates``)."""

    @property
    def bundle(self) -> IdentityBundle: ...

    @property
    def generation(self) -> int: ...


def server_context(bundle: IdentityBundle) -> ssl.SSLContext:
    """A server context presenting ``bundle``'s certificate and intermediates.

    Python loads a certificate and key from files only: they are written to a
    private temporary directory (0700, the file 0600) and removed at once.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    with tempfile.TemporaryDirectory(prefix="murmur-router-") as private:
        path = Path(private) / "identity.pem"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(bundle.certificate_chain_pem + bundle.key_pem)
        context.load_cert_chain(path)
    return context


def names_of(bundle: IdentityBundle) -> tuple[set[str], set[str]]:
    """The DNS names and IP addresses the certificate is valid for."""
    certificate = x509.load_pem_x509_certificate(bundle.certificate_pem)
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    dns = {name.lower() for name in sans.get_values_for_type(x509.DNSName)}
    ips = {str(address) for address in sans.get_values_for_type(x509.IPAddress)}
    return dns, ips


def covers(bundle: IdentityBundle, host: str) -> bool:
    """Whether a client dialling ``host`` verifies the certificate; a wildcard
    address (``0.0.0.0``, ``::``) counts as covered (clients dial the node's
    advertised address, which the certificate names)."""
    dns, ips = names_of(bundle)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host.lower().rstrip(".") in dns
    return address.is_unspecified or str(address) in ips


class RouterTls:
    """The router listener's TLS: the node's certificate, renewed live.

    Args:
        certificates: the node's certificate source (``ClusterTrust.certificates``).
        handshake_seconds: how long a client has to finish its handshake.
    """

    def __init__(
        self, certificates: CertificateSource, *, handshake_seconds: float = HANDSHAKE_SECONDS
    ) -> None:
        self._certificates = certificates
        self.handshake_seconds = handshake_seconds
        self._generation = certificates.generation
        self._listener = server_context(certificates.bundle)
        self._listener.sni_callback = self._on_hello
        self._current = self._listener

    @property
    def bundle(self) -> IdentityBundle:
        return self._certificates.bundle

    def context(self) -> ssl.SSLContext:
        """The context the listener is made with."""
        return self._listener

    def _on_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext
    ) -> None:
        generation = self._certificates.generation
        if generation != self._generation:
            try:
                self._current = server_context(self._certificates.bundle)
            except (ssl.SSLError, OSError, ValueError) as exc:
                # The old certificate is still valid for a third of its life: keep it.
                _log.error("the router cannot take in the renewed certificate: %s", exc,
                           extra={"event": "router.tls_reload_failed"})  # fmt: skip
            self._generation = generation
        if self._current is not self._listener:
            connection.context = self._current
