"""Only holders of a valid certificate from the lab CA get any answer from a node.

These go around the client library (which would refuse an expired identity
itself, before connecting) to prove the *node* refuses at the TLS handshake.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from murmur.certs import NODE_TLS_NAME, CertificateAuthority, IdentityBundle, Role
from tests.support.nodes import Lab, NodeProcess


async def health_check(
    node: NodeProcess, *, ca_pem: bytes, key_pem: bytes | None, cert_pem: bytes | None
) -> grpc.StatusCode:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )
    async with grpc.aio.secure_channel(
        node.address, credentials, options=[("grpc.ssl_target_name_override", NODE_TLS_NAME)]
    ) as channel:
        try:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


async def test_a_valid_lab_certificate_is_accepted(lab: Lab, ca_node: NodeProcess) -> None:
    bundle = IdentityBundle.read(lab.admin_identity)
    code = await health_check(
        ca_node,
        ca_pem=bundle.ca_certificate_pem,
        key_pem=bundle.key_pem,
        cert_pem=bundle.certificate_pem,
    )
    assert code == grpc.StatusCode.OK


async def test_no_client_certificate_is_refused(lab: Lab, ca_node: NodeProcess) -> None:
    code = await health_check(ca_node, ca_pem=lab.ca.certificate_pem, key_pem=None, cert_pem=None)
    assert code == grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_from_another_ca_is_refused(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    other = CertificateAuthority.create(tmp_path / "other-ca")
    intruder = other.issue(name="admin", role=Role.ADMIN, validity_days=30)
    code = await health_check(
        ca_node,
        ca_pem=lab.ca.certificate_pem,
        key_pem=intruder.key_pem,
        cert_pem=intruder.certificate_pem,
    )
    assert code == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("issued_at", "days"),
    [
        pytest.param(datetime.now(UTC) - timedelta(days=10), 2, id="expired"),
        pytest.param(datetime.now(UTC) + timedelta(days=10), 30, id="not-yet-valid"),
    ],
)
async def test_certificates_outside_their_validity_are_refused(
    lab: Lab, ca_node: NodeProcess, issued_at: datetime, days: int
) -> None:
    stale = lab.ca.issue(name="admin", role=Role.ADMIN, validity_days=days, now=issued_at)
    code = await health_check(
        ca_node,
        ca_pem=lab.ca.certificate_pem,
        key_pem=stale.key_pem,
        cert_pem=stale.certificate_pem,
    )
    assert code == grpc.StatusCode.UNAVAILABLE


async def test_a_node_that_is_not_ours_is_refused_by_the_client(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    """The client side of mutual TLS: a node signed by another CA is not trusted."""
    other = CertificateAuthority.create(tmp_path / "other-ca")
    bundle = IdentityBundle.read(lab.admin_identity)
    code = await health_check(
        ca_node,
        ca_pem=other.certificate_pem,
        key_pem=bundle.key_pem,
        cert_pem=bundle.certificate_pem,
    )
    assert code == grpc.StatusCode.UNAVAILABLE
