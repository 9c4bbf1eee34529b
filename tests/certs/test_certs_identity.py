"""Identity bundles on disk, and what a certificate says about its holder."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from murmur.certs import (
    CertificateAuthority,
    CertificateExpiredError,
    CertificateIdentity,
    CertificateNotYetValidError,
    IdentityBundle,
    IdentityError,
    IdentityFileError,
    Role,
    check_validity,
    generate_private_key,
    identity_from_certificate,
    private_key_pem,
)

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def dated_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("dated") / "ca", now=NOW)


@pytest.fixture(scope="module")
def alice(dated_ca: CertificateAuthority) -> IdentityBundle:
    return dated_ca.issue(name="alice", role=Role.MEMBER, validity_days=90, now=NOW)


def write_raw(path: Path, *blocks: bytes) -> Path:
    path.write_bytes(b"".join(blocks))
    return path


def test_issue_gives_a_consistent_identity(
    alice: IdentityBundle, dated_ca: CertificateAuthority
) -> None:
    identity = alice.identity
    assert identity.name == "alice"
    assert identity.role is Role.MEMBER
    assert identity.not_before == NOW - timedelta(minutes=5)
    assert identity.not_after == NOW + timedelta(days=90)
    certificate = x509.load_pem_x509_certificate(alice.certificate_pem)
    assert identity.serial == format(certificate.serial_number, "x")
    assert alice.ca_certificate_pem == dated_ca.certificate_pem
    assert alice.ca_fingerprint == dated_ca.fingerprint


def test_bundle_round_trips_through_a_private_file(tmp_path: Path, alice: IdentityBundle) -> None:
    path = tmp_path / "home" / ".murmur" / "identity.pem"
    alice.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert IdentityBundle.read(path) == alice


def test_bundle_file_layout(tmp_path: Path, alice: IdentityBundle) -> None:
    path = tmp_path / "identity.pem"
    alice.write(path)
    text = path.read_text()
    header, _, body = text.partition("-----BEGIN")
    assert header.splitlines()[0].startswith("# Murmur identity of 'alice', role member")
    assert all(line.startswith("# ") for line in header.splitlines())
    assert (
        "-----BEGIN" + body
        == (alice.key_pem + alice.certificate_pem + alice.ca_certificate_pem).decode()
    )


def test_bundle_without_comments_and_with_crlf_is_read(
    tmp_path: Path, alice: IdentityBundle
) -> None:
    content = alice.key_pem + alice.certificate_pem + alice.ca_certificate_pem
    path = write_raw(tmp_path / "identity.pem", content.replace(b"\n", b"\r\n"))
    assert IdentityBundle.read(path).identity == alice.identity


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.pem"
    with pytest.raises(IdentityFileError) as raised:
        IdentityBundle.read(path)
    assert str(raised.value) == (
        f"no identity at {path}; run `murmur ca init` or ask an admin for `murmur user add`"
    )


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(IdentityFileError, match="cannot read identity"):
        IdentityBundle.read(tmp_path)  # a directory


@pytest.mark.parametrize(
    ("parts", "complaint"),
    [
        ((), "missing the private key block"),
        (("key",), "missing the certificate block"),
        (("key", "certificate"), "missing the CA certificate block"),
        (("certificate", "key", "ca"), "expected the private key as block 1"),
        (("key", "ca", "key"), "expected the CA certificate as block 3"),
        (("key", "certificate", "ca", "key"), "expected a certificate as block 4"),
        (("key", "certificate", "certificate"), "missing the CA certificate block"),
        (
            ("key", "certificate", "ca", "certificate"),
            "a certificate that is not self-signed after the CA certificates",
        ),
    ],
)
def test_missing_or_misplaced_blocks(
    tmp_path: Path, alice: IdentityBundle, parts: tuple[str, ...], complaint: str
) -> None:
    pems = {
        "key": alice.key_pem,
        "certificate": alice.certificate_pem,
        "ca": alice.ca_certificate_pem,
    }
    path = write_raw(tmp_path / "identity.pem", b"# header\n", *(pems[part] for part in parts))
    with pytest.raises(IdentityFileError, match=f"identity file {path}: {complaint}"):
        IdentityBundle.read(path)


def corrupt(pem: bytes) -> bytes:
    lines = pem.splitlines(keepends=True)
    return b"".join([lines[0], b"QUFBQUFBQUFBQUFB\n", lines[-1]])


@pytest.mark.parametrize(
    ("which", "complaint"),
    [
        ("key", "the private key block is corrupt"),
        ("certificate", "the certificate block is corrupt"),
        ("ca", "the CA certificate block is corrupt"),
    ],
)
def test_corrupt_block(tmp_path: Path, alice: IdentityBundle, which: str, complaint: str) -> None:
    pems = {
        "key": alice.key_pem,
        "certificate": alice.certificate_pem,
        "ca": alice.ca_certificate_pem,
    }
    pems[which] = corrupt(pems[which])
    path = write_raw(tmp_path / "identity.pem", pems["key"], pems["certificate"], pems["ca"])
    with pytest.raises(IdentityFileError, match=complaint):
        IdentityBundle.read(path)


def test_truncated_file(tmp_path: Path, alice: IdentityBundle) -> None:
    content = alice.key_pem + alice.certificate_pem + alice.ca_certificate_pem
    path = write_raw(tmp_path / "identity.pem", content[: len(content) - 40])
    with pytest.raises(IdentityFileError, match="truncated or corrupt"):
        IdentityBundle.read(path)


def test_text_between_blocks(tmp_path: Path, alice: IdentityBundle) -> None:
    path = write_raw(
        tmp_path / "identity.pem",
        alice.key_pem,
        b"# a comment after the key is not allowed either\n",
        alice.certificate_pem,
        alice.ca_certificate_pem,
    )
    with pytest.raises(IdentityFileError, match="unexpected text outside the PEM blocks"):
        IdentityBundle.read(path)


def test_key_that_does_not_match_the_certificate(tmp_path: Path, alice: IdentityBundle) -> None:
    stranger_key = private_key_pem(generate_private_key())
    path = write_raw(
        tmp_path / "identity.pem", stranger_key, alice.certificate_pem, alice.ca_certificate_pem
    )
    with pytest.raises(IdentityFileError, match="private key does not match the certificate"):
        IdentityBundle.read(path)


def test_certificate_from_another_ca(
    tmp_path: Path, alice: IdentityBundle, other_ca: CertificateAuthority
) -> None:
    path = write_raw(
        tmp_path / "identity.pem", alice.key_pem, alice.certificate_pem, other_ca.certificate_pem
    )
    with pytest.raises(IdentityFileError, match="not issued by the CA certificate"):
        IdentityBundle.read(path)


def test_encrypted_key_is_reported(tmp_path: Path, alice: IdentityBundle) -> None:
    key = serialization.load_pem_private_key(alice.key_pem, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    path = write_raw(
        tmp_path / "identity.pem", encrypted, alice.certificate_pem, alice.ca_certificate_pem
    )
    with pytest.raises(IdentityFileError, match="the private key is encrypted"):
        IdentityBundle.read(path)


def certificate_with_subject(
    ca_directory: Path, attributes: list[x509.NameAttribute[str]]
) -> bytes:
    """A certificate signed by the CA in `ca_directory`, with any subject we like."""
    ca_key = serialization.load_pem_private_key(
        (ca_directory / "ca.key").read_bytes(), password=None
    )
    ca_certificate = x509.load_pem_x509_certificate((ca_directory / "ca.crt").read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    leaf_key = generate_private_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca_certificate.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("attributes", "complaint"),
    [
        ([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "member")], "no common name"),
        ([x509.NameAttribute(NameOID.COMMON_NAME, "alice")], "no role"),
        (
            [
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "superuser"),
                x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
            ],
            "unknown role 'superuser'",
        ),
        (
            [
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "member"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "admin"),
                x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
            ],
            "more than one role",
        ),
    ],
)
def test_identity_needs_a_name_and_a_known_role(
    tmp_path: Path, attributes: list[x509.NameAttribute[str]], complaint: str
) -> None:
    CertificateAuthority.create(tmp_path / "ca", now=NOW)
    pem = certificate_with_subject(tmp_path / "ca", attributes)
    with pytest.raises(IdentityError, match=complaint):
        identity_from_certificate(pem)


def test_identity_of_garbage() -> None:
    with pytest.raises(IdentityError, match="not a valid certificate"):
        identity_from_certificate(b"\x30\x03\x02\x01\x01")


def identity_valid(not_before: datetime, not_after: datetime) -> CertificateIdentity:
    return CertificateIdentity(
        name="alice", role=Role.MEMBER, serial="1f", not_before=not_before, not_after=not_after
    )


def test_validity_inside_the_window(alice: IdentityBundle) -> None:
    check_validity(alice.identity, NOW)
    check_validity(alice.identity, NOW - timedelta(minutes=4))  # clock skew allowance
    check_validity(alice.identity, NOW + timedelta(days=90))


def test_expired(alice: IdentityBundle) -> None:
    with pytest.raises(CertificateExpiredError, match="'alice' expired at 2030-08-30"):
        check_validity(alice.identity, NOW + timedelta(days=90, seconds=1))


def test_not_yet_valid(alice: IdentityBundle) -> None:
    with pytest.raises(CertificateNotYetValidError, match="check this machine's clock"):
        check_validity(alice.identity, NOW - timedelta(minutes=6))


def test_validity_defaults_to_the_real_clock() -> None:
    now = datetime.now(UTC)
    check_validity(identity_valid(now - timedelta(hours=1), now + timedelta(hours=1)))
    with pytest.raises(CertificateExpiredError):
        check_validity(identity_valid(now - timedelta(hours=2), now - timedelta(hours=1)))


def test_naive_now_is_a_caller_bug(alice: IdentityBundle) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_validity(alice.identity, datetime(2030, 6, 1))
