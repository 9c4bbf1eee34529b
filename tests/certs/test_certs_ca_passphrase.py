"""The CA key at rest, encrypted with the operator's passphrase, and handed over as PEM."""

from __future__ import annotations

from pathlib import Path

import pytest

from murmur.certs import CertificateAuthority, CertificateFileError

PASSPHRASE = b"correct horse battery staple"


def test_a_passphrase_encrypts_the_key_at_rest(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca", passphrase=PASSPHRASE)
    key_file = (tmp_path / "ca" / "ca.key").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in key_file
    assert CertificateAuthority.key_is_encrypted(tmp_path / "ca")
    loaded = CertificateAuthority.load(tmp_path / "ca", passphrase=PASSPHRASE)
    assert loaded.fingerprint == ca.fingerprint


def test_an_encrypted_key_needs_the_right_passphrase(tmp_path: Path) -> None:
    CertificateAuthority.create(tmp_path / "ca", passphrase=PASSPHRASE)
    with pytest.raises(CertificateFileError, match="no passphrase was given"):
        CertificateAuthority.load(tmp_path / "ca")
    with pytest.raises(CertificateFileError, match="wrong passphrase"):
        CertificateAuthority.load(tmp_path / "ca", passphrase=b"guess")


def test_a_key_in_the_clear_loads_whatever_the_passphrase(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca")
    assert not CertificateAuthority.key_is_encrypted(tmp_path / "ca")
    assert CertificateAuthority.load(tmp_path / "ca", passphrase=PASSPHRASE).fingerprint == (
        ca.fingerprint
    )


def test_the_key_travels_as_pem_and_must_match_its_certificate(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca")
    other = CertificateAuthority.create(tmp_path / "other")
    copy = CertificateAuthority.from_pem(ca.private_key_pem(), ca.certificate_pem)
    assert copy.fingerprint == ca.fingerprint
    with pytest.raises(CertificateFileError, match="does not match"):
        CertificateAuthority.from_pem(other.private_key_pem(), ca.certificate_pem)
    sealed = ca.private_key_pem(PASSPHRASE)
    assert CertificateAuthority.from_pem(sealed, ca.certificate_pem, passphrase=PASSPHRASE)
    copy.write(tmp_path / "copy", passphrase=PASSPHRASE)
    assert CertificateAuthority.key_is_encrypted(tmp_path / "copy")
