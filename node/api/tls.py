"""The node's server certificates, swapped live when the node's certificate is renewed
or the lab CAs it trusts change (a CA rotation: node/trust_anchors.py).

gRPC asks a dynamic credentials' fetcher for the certificate configuration at each
new TLS handshake (``grpc.dynamic_ssl_server_credentials``); an unchanged answer is
``None``. So a renewed certificate is served from the next connection on, and the
connections already open, with their calls and streams, go on untouched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import cast

import grpc

from murmur.certs import IdentityBundle, server_certificate_chain


class ServerCertificates:
    """The identity the node's listeners present, replaced by :meth:`update`."""

    def __init__(self, bundle: IdentityBundle) -> None:
        self._lock = threading.Lock()  # the fetcher runs on gRPC's threads
        self._bundle = bundle
        self._generation = 0

    @property
    def bundle(self) -> IdentityBundle:
        return self._bundle

    @property
    def generation(self) -> int:
        """How many times the identity was replaced."""
        return self._generation

    def update(self, bundle: IdentityBundle) -> None:
        """Serve ``bundle`` from the next handshake on."""
        with self._lock:
            self._bundle = bundle
            self._generation += 1

    def api_credentials(self) -> grpc.ServerCredentials:
        """Mutual TLS: client certificates required, checked against the lab CA."""
        return self._dynamic(_api_configuration, require_client_auth=True)

    def join_credentials(self) -> grpc.ServerCredentials:
        """TLS without client certificates; the chain includes the CA certificate, so
        a joiner can pin it by its token's fingerprint."""
        return self._dynamic(_join_configuration, require_client_auth=False)

    def _dynamic(
        self,
        configuration: Callable[[IdentityBundle], grpc.ServerCertificateConfiguration],
        *,
        require_client_auth: bool,
    ) -> grpc.ServerCredentials:
        served = [self._generation]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            with self._lock:
                if served[0] == self._generation:
                    return None
                served[0] = self._generation
                bundle = self._bundle
            return configuration(bundle)

        # gRPC documents None as "unchanged"; its type stubs leave that out.
        fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], fetch)
        return grpc.dynamic_ssl_server_credentials(
            configuration(self._bundle), fetcher, require_client_authentication=require_client_auth
        )


def _api_configuration(bundle: IdentityBundle) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(bundle.key_pem, bundle.certificate_chain_pem)],
        root_certificates=bundle.ca_certificate_pem,
    )


def _join_configuration(bundle: IdentityBundle) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(bundle.key_pem, server_certificate_chain(bundle))]
    )
