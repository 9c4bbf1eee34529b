"""Shared lab CAs for the certs tests: real keys and real files in temporary directories."""

from __future__ import annotations

import pytest

from murmur.certs import CertificateAuthority, IdentityBundle, Role


@pytest.fixture(scope="session")
def lab_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """A lab CA valid around the real current time; shared because it is read-only."""
    return CertificateAuthority.create(tmp_path_factory.mktemp("lab-ca") / "ca")


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """A second, unrelated CA: what an attacker or another lab would hold."""
    return CertificateAuthority.create(
        tmp_path_factory.mktemp("other-ca") / "ca", common_name="Another lab CA"
    )


@pytest.fixture(scope="session")
def node_bundle(lab_ca: CertificateAuthority) -> IdentityBundle:
    """A node identity from `lab_ca` whose certificate names 127.0.0.1."""
    return lab_ca.issue(
        name="gpu-01", role=Role.NODE, validity_days=30, node_addresses=["127.0.0.1:7000"]
    )
