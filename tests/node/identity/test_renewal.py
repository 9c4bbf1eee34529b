"""Renewal: due at two thirds of the lifetime; the next signer is tried on failure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from murmur.certs import CertificateAuthority, IdentityBundle, Role
from murmur.node.identity.enrollment import IssuedCertificate
from murmur.node.identity.renewal import CertificateRenewer, Signer, renewal_due_at


def test_renewal_is_due_two_thirds_into_the_lifetime(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca")
    identity = ca.issue(name="gpu1", role=Role.NODE, validity_days=30).identity
    due = renewal_due_at(identity, 2 / 3)
    assert identity.not_before + timedelta(days=20) <= due < identity.not_after


async def test_a_renewal_writes_the_new_bundle_and_hands_it_on(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca")
    old = ca.issue(name="gpu1", role=Role.NODE, validity_days=1)
    path = tmp_path / "identity.pem"
    old.write(path)
    handed: list[IdentityBundle] = []

    async def broken(csr: bytes, addresses: Sequence[str]) -> IssuedCertificate:
        raise ConnectionError("holder down")

    async def holder(csr: bytes, addresses: Sequence[str]) -> IssuedCertificate:
        certificate = ca.sign_csr(
            csr, name="gpu1", role=Role.NODE, validity_days=365, node_addresses=addresses
        )
        return IssuedCertificate(certificate, ca.certificate_pem)

    async def on_renewed(bundle: IdentityBundle) -> None:
        handed.append(bundle)

    signers: list[Signer] = [broken, holder]
    renewer = CertificateRenewer(
        identity_path=path,
        current=lambda: handed[-1] if handed else old,
        signers=lambda: signers,
        addresses=["10.0.0.5"],
        on_renewed=on_renewed,
        fraction=0.0,
        check_seconds=3600.0,
    )
    assert renewer.due()
    bundle = await renewer.renew_once()
    assert IdentityBundle.read(path) == bundle == handed[-1]
    assert bundle.identity.serial != old.identity.serial
    assert bundle.key_pem != old.key_pem

    signers = [broken]
    with pytest.raises(ConnectionError):
        await renewer.renew_once()
