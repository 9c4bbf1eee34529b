"""A CA's successor and cross certificate, and bundles that trust two CAs."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from murmur.certs import CertificateAuthority, IdentityBundle, Role
from murmur.certs.errors import IdentityFileError


def test_the_successor_keeps_the_name_with_a_new_key(lab_ca: CertificateAuthority) -> None:
    successor = lab_ca.successor()
    assert successor.certificate.subject == lab_ca.certificate.subject
    assert successor.fingerprint != lab_ca.fingerprint
    assert successor.certificate.public_key() != lab_ca.certificate.public_key()


def test_the_cross_certificate_is_the_successor_certified_by_the_old_ca(
    lab_ca: CertificateAuthority,
) -> None:
    successor = lab_ca.successor()
    cross = x509.load_pem_x509_certificate(lab_ca.cross_sign(successor))
    cross.verify_directly_issued_by(lab_ca.certificate)
    # Self-issued (same name as its issuer): path length constraints do not count it.
    assert cross.subject == cross.issuer == lab_ca.certificate.subject
    assert cross.public_key() == successor.certificate.public_key()
    leaf = successor.issue(name="gpu-01", role=Role.NODE, validity_days=1)
    x509.load_pem_x509_certificate(leaf.certificate_pem).verify_directly_issued_by(cross)


def test_a_bundle_trusting_two_cas_round_trips(
    tmp_path: Path, lab_ca: CertificateAuthority
) -> None:
    successor = lab_ca.successor()
    cross = lab_ca.cross_sign(successor)
    issued = successor.issue(name="gpu-01", role=Role.NODE, validity_days=1)
    bundle = issued.with_trust(successor.certificate_pem + lab_ca.certificate_pem, cross)
    bundle.write(tmp_path / "identity.pem")
    read = IdentityBundle.read(tmp_path / "identity.pem")
    assert read == bundle
    assert read.ca_fingerprint == successor.fingerprint
    assert read.ca_fingerprints == [successor.fingerprint, lab_ca.fingerprint]
    assert read.certificate_chain_pem == issued.certificate_pem + cross


def test_a_bundle_whose_issuer_is_not_trusted_is_refused(
    tmp_path: Path, lab_ca: CertificateAuthority
) -> None:
    successor = lab_ca.successor()
    issued = lab_ca.issue(name="gpu-01", role=Role.NODE, validity_days=1)
    issued.with_trust(successor.certificate_pem).write(tmp_path / "identity.pem")
    with pytest.raises(IdentityFileError, match="was not issued by the CA certificate"):
        IdentityBundle.read(tmp_path / "identity.pem")
