"""Fetching the CA from a real TLS join listener, trusting only the token's pin."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from murmur.certs import (
    CaPinMismatchError,
    CertificateAuthority,
    IdentityBundle,
    JoinUnreachableError,
    Role,
    fetch_pinned_ca_certificate,
    server_certificate_chain,
)


@contextmanager
def tls_listener(tmp_path: Path, key_pem: bytes, chain_pem: bytes) -> Iterator[int]:
    """A real TLS server on 127.0.0.1 that presents `chain_pem`; yields its port."""
    key_path, chain_path = tmp_path / "listener.key", tmp_path / "listener-chain.pem"
    key_path.write_bytes(key_pem)
    chain_path.write_bytes(chain_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_path, key_path)
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.05)

        def serve() -> None:
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                connection.settimeout(5)
                try:
                    with context.wrap_socket(connection, server_side=True) as tls:
                        tls.recv(1)  # until the client hangs up
                except OSError:
                    pass  # the client closing mid-way is its business
                finally:
                    connection.close()

        thread = threading.Thread(target=serve, name="tls-listener", daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1]
        finally:
            stop.set()
            thread.join(timeout=5)


def test_chain_is_leaf_then_ca(node_bundle: IdentityBundle) -> None:
    assert server_certificate_chain(node_bundle) == (
        node_bundle.certificate_pem + node_bundle.ca_certificate_pem
    )


def test_right_pin_returns_the_ca(
    tmp_path: Path, lab_ca: CertificateAuthority, node_bundle: IdentityBundle
) -> None:
    with tls_listener(tmp_path, node_bundle.key_pem, server_certificate_chain(node_bundle)) as port:
        ca_pem = fetch_pinned_ca_certificate("127.0.0.1", port, lab_ca.fingerprint)
        assert ca_pem == lab_ca.certificate_pem
        # A pin copied with colons or in upper case is the same pin.
        spaced = ":".join(lab_ca.fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
        assert fetch_pinned_ca_certificate("127.0.0.1", port, spaced) == lab_ca.certificate_pem


def test_wrong_pin_is_refused(
    tmp_path: Path, other_ca: CertificateAuthority, node_bundle: IdentityBundle
) -> None:
    chain = server_certificate_chain(node_bundle)
    with (
        tls_listener(tmp_path, node_bundle.key_pem, chain) as port,
        pytest.raises(
            CaPinMismatchError,
            match=f"the node at 127.0.0.1:{port} does not present the CA pinned in the token",
        ),
    ):
        fetch_pinned_ca_certificate("127.0.0.1", port, other_ca.fingerprint)


def test_leaf_without_its_ca_is_refused(
    tmp_path: Path, lab_ca: CertificateAuthority, node_bundle: IdentityBundle
) -> None:
    with (
        tls_listener(tmp_path, node_bundle.key_pem, node_bundle.certificate_pem) as port,
        pytest.raises(CaPinMismatchError, match="does not present the CA pinned"),
    ):
        fetch_pinned_ca_certificate("127.0.0.1", port, lab_ca.fingerprint)


def test_copying_the_public_ca_certificate_is_not_enough(
    tmp_path: Path, lab_ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    impostor = other_ca.issue(name="gpu-01", role=Role.NODE, validity_days=1)
    chain = impostor.certificate_pem + lab_ca.certificate_pem
    with (
        tls_listener(tmp_path, impostor.key_pem, chain) as port,
        pytest.raises(CaPinMismatchError, match="not issued by the pinned CA"),
    ):
        fetch_pinned_ca_certificate("127.0.0.1", port, lab_ca.fingerprint)


def test_a_user_certificate_cannot_pose_as_a_join_listener(
    tmp_path: Path, lab_ca: CertificateAuthority
) -> None:
    member = lab_ca.issue(name="mallory", role=Role.MEMBER, validity_days=1)
    with (
        tls_listener(tmp_path, member.key_pem, server_certificate_chain(member)) as port,
        pytest.raises(CaPinMismatchError, match="not a node certificate"),
    ):
        fetch_pinned_ca_certificate("127.0.0.1", port, lab_ca.fingerprint)


def test_closed_port_is_unreachable(lab_ca: CertificateAuthority) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with pytest.raises(JoinUnreachableError, match=f"join listener at 127.0.0.1:{port}"):
        fetch_pinned_ca_certificate("127.0.0.1", port, lab_ca.fingerprint)


def test_silent_listener_times_out(lab_ca: CertificateAuthority) -> None:
    # The kernel accepts the TCP connection into the backlog; nobody speaks TLS.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        with pytest.raises(JoinUnreachableError, match=r"did not answer within 0\.2 s"):
            fetch_pinned_ca_certificate("127.0.0.1", port, lab_ca.fingerprint, timeout=0.2)


def test_non_tls_listener_fails_the_handshake(lab_ca: CertificateAuthority) -> None:
    with socket.create_server(("127.0.0.1", 0)) as plain:
        port = plain.getsockname()[1]

        def answer_in_plain_text() -> None:
            connection, _ = plain.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer_in_plain_text, daemon=True)
        thread.start()
        with pytest.raises(JoinUnreachableError, match=f"TLS handshake .*127.0.0.1:{port}"):
            fetch_pinned_ca_certificate("127.0.0.1", port, lab_ca.fingerprint)
        thread.join(timeout=5)
