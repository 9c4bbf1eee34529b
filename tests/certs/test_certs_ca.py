"""Creating, loading and refusing to overwrite the lab CA."""

from __future__ import annotations

import hashlib
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from murmur.certs import (
    CAExistsError,
    CANotFoundError,
    CertificateAuthority,
    CertificateFileError,
    Role,
)

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_writes_owner_only_key_and_certificate(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "ca"
    CertificateAuthority.create(directory)
    assert mode_of(directory) == 0o700
    assert mode_of(directory / "ca.key") == 0o600
    assert mode_of(directory / "ca.crt") == 0o644
    key_pem = (directory / "ca.key").read_bytes()
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)


def test_ca_certificate_is_a_self_signed_leafless_ca(tmp_path: Path) -> None:
    authority = CertificateAuthority.create(
        tmp_path / "ca", common_name="Vision lab CA", validity_days=100, now=NOW
    )
    certificate = x509.load_pem_x509_certificate(authority.certificate_pem)
    certificate.verify_directly_issued_by(certificate)
    assert certificate.subject.rfc4514_string() == "CN=Vision lab CA"
    assert certificate.issuer == certificate.subject
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    assert constraints.value.path_length == 0
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert certificate.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert certificate.not_valid_after_utc == NOW + timedelta(days=100)


def test_fingerprint_is_sha256_of_der(tmp_path: Path) -> None:
    authority = CertificateAuthority.create(tmp_path / "ca")
    der = x509.load_pem_x509_certificate(authority.certificate_pem).public_bytes(
        serialization.Encoding.DER
    )
    assert authority.fingerprint == hashlib.sha256(der).hexdigest()
    assert authority.fingerprint == authority.fingerprint.lower()
    assert authority.fingerprint in repr(authority)


def test_load_returns_the_same_ca(tmp_path: Path) -> None:
    created = CertificateAuthority.create(tmp_path / "ca")
    loaded = CertificateAuthority.load(tmp_path / "ca")
    assert loaded.fingerprint == created.fingerprint
    assert loaded.certificate_pem == created.certificate_pem


def test_exists(tmp_path: Path) -> None:
    assert not CertificateAuthority.exists(tmp_path / "ca")
    CertificateAuthority.create(tmp_path / "ca")
    assert CertificateAuthority.exists(tmp_path / "ca")


def test_create_refuses_to_overwrite_an_existing_ca(tmp_path: Path) -> None:
    original = CertificateAuthority.create(tmp_path / "ca")
    key_before = (tmp_path / "ca" / "ca.key").read_bytes()
    with pytest.raises(CAExistsError, match=r"already exists at .*ca\.key"):
        CertificateAuthority.create(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca.key").read_bytes() == key_before
    assert CertificateAuthority.load(tmp_path / "ca").fingerprint == original.fingerprint


def test_create_refuses_a_leftover_certificate(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"left over from a crash")
    with pytest.raises(CAExistsError, match=r"ca\.crt"):
        CertificateAuthority.create(tmp_path)


def test_create_rejects_non_positive_validity(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="validity_days"):
        CertificateAuthority.create(tmp_path / "ca", validity_days=0)
    assert not (tmp_path / "ca").exists()


def test_load_without_ca_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CANotFoundError, match=str(tmp_path)):
        CertificateAuthority.load(tmp_path)


def test_load_corrupt_key(tmp_path: Path) -> None:
    CertificateAuthority.create(tmp_path / "ca")
    (tmp_path / "ca" / "ca.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
    with pytest.raises(CertificateFileError, match=r"CA key .*ca\.key"):
        CertificateAuthority.load(tmp_path / "ca")


def test_load_corrupt_certificate(tmp_path: Path) -> None:
    CertificateAuthority.create(tmp_path / "ca")
    (tmp_path / "ca" / "ca.crt").write_bytes(b"garbage")
    with pytest.raises(CertificateFileError, match=r"ca\.crt"):
        CertificateAuthority.load(tmp_path / "ca")


def test_load_missing_certificate(tmp_path: Path) -> None:
    CertificateAuthority.create(tmp_path / "ca")
    (tmp_path / "ca" / "ca.crt").unlink()
    with pytest.raises(CertificateFileError, match=r"cannot read .*ca\.crt"):
        CertificateAuthority.load(tmp_path / "ca")


def test_load_key_of_another_ca(tmp_path: Path) -> None:
    CertificateAuthority.create(tmp_path / "one")
    CertificateAuthority.create(tmp_path / "two")
    (tmp_path / "one" / "ca.key").write_bytes((tmp_path / "two" / "ca.key").read_bytes())
    with pytest.raises(CertificateFileError, match="does not match"):
        CertificateAuthority.load(tmp_path / "one")


def test_load_rsa_key_is_refused(tmp_path: Path) -> None:
    CertificateAuthority.create(tmp_path / "ca")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "ca" / "ca.key").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(CertificateFileError, match="RSA-2048 keys are not supported"):
        CertificateAuthority.load(tmp_path / "ca")


def test_a_leaf_certificate_cannot_pose_as_the_ca(
    tmp_path: Path, lab_ca: CertificateAuthority
) -> None:
    bundle = lab_ca.issue(name="alice", role=Role.ADMIN, validity_days=1)
    (tmp_path / "ca.key").write_bytes(bundle.key_pem)
    (tmp_path / "ca.crt").write_bytes(bundle.certificate_pem)
    with pytest.raises(CertificateFileError, match="not marked as a CA"):
        CertificateAuthority.load(tmp_path)
