"""Certificates from the lab CA work for gRPC mutual TLS, and others are refused.

The RPC-level checks (roles, revocation) belong to the node; this only proves that the
certificates we issue are what gRPC's TLS stack expects: a node serves its chain under
the name `node.murmur`, a client from the lab CA gets in, and a client with a
certificate from another CA or an expired one does not get past the handshake.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from murmur.certs import (
    NODE_TLS_NAME,
    CertificateAuthority,
    IdentityBundle,
    Role,
    fetch_pinned_ca_certificate,
    server_certificate_chain,
)

ECHO_METHOD = "/murmur.test.Echo/Echo"


def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


@pytest.fixture(scope="module")
def mtls_port(lab_ca: CertificateAuthority, node_bundle: IdentityBundle) -> Iterator[int]:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "murmur.test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(node_bundle.key_pem, server_certificate_chain(node_bundle))],
        root_certificates=lab_ca.certificate_pem,
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None).wait()


def call_as(bundle: IdentityBundle, port: int) -> bytes:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=bundle.ca_certificate_pem,
        private_key=bundle.key_pem,
        certificate_chain=bundle.certificate_pem,
    )
    options = [("grpc.ssl_target_name_override", NODE_TLS_NAME)]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        method = channel.unary_unary(
            ECHO_METHOD, request_serializer=None, response_deserializer=None
        )
        reply = method(b"ping", timeout=3)
    assert isinstance(reply, bytes)
    return reply


def test_client_from_the_lab_ca_is_served(lab_ca: CertificateAuthority, mtls_port: int) -> None:
    alice = lab_ca.issue(name="alice", role=Role.MEMBER, validity_days=1)
    assert call_as(alice, mtls_port) == b"ping"


def test_client_from_another_ca_is_refused(
    lab_ca: CertificateAuthority, other_ca: CertificateAuthority, mtls_port: int
) -> None:
    stranger = other_ca.issue(name="alice", role=Role.ADMIN, validity_days=1)
    # The stranger even trusts the lab CA, so only the server's check can stop it.
    stranger = IdentityBundle(
        key_pem=stranger.key_pem,
        certificate_pem=stranger.certificate_pem,
        ca_certificate_pem=lab_ca.certificate_pem,
    )
    with pytest.raises(grpc.RpcError) as raised:
        call_as(stranger, mtls_port)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


def test_expired_client_is_refused(lab_ca: CertificateAuthority, mtls_port: int) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=3)
    expired = lab_ca.issue(name="alice", role=Role.MEMBER, validity_days=1, now=long_ago)
    with pytest.raises(grpc.RpcError) as raised:
        call_as(expired, mtls_port)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


def test_pin_is_fetched_from_a_grpc_join_listener(
    lab_ca: CertificateAuthority, node_bundle: IdentityBundle
) -> None:
    # The join listener is a gRPC server without client authentication: the joiner
    # has no certificate yet.
    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    credentials = grpc.ssl_server_credentials(
        [(node_bundle.key_pem, server_certificate_chain(node_bundle))],
        require_client_auth=False,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        ca_pem = fetch_pinned_ca_certificate("127.0.0.1", port, lab_ca.fingerprint)
    finally:
        server.stop(grace=None).wait()
    assert ca_pem == lab_ca.certificate_pem
