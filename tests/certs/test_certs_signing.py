"""Signing CSRs: the CA decides subject, SANs and usages; bad CSRs are refused."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.certs import (
    NODE_TLS_NAME,
    CertificateAuthority,
    CertificateExpiredError,
    CsrError,
    InvalidNameError,
    Role,
    generate_private_key,
    identity_from_certificate,
    make_csr,
)
from murmur.certs.roles import NAME_PATTERN

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
USER_ROLES = [Role.ADMIN, Role.MEMBER, Role.VIEWER]


@pytest.fixture(scope="module")
def dated_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """A CA created at NOW, valid for 10 years, so tests can inject NOW."""
    return CertificateAuthority.create(tmp_path_factory.mktemp("dated") / "ca", now=NOW)


@pytest.fixture(scope="module")
def csr() -> bytes:
    return make_csr(generate_private_key(), "requester")


def sign(
    authority: CertificateAuthority,
    csr_pem: bytes,
    *,
    name: str = "alice",
    role: Role = Role.MEMBER,
    node_addresses: tuple[str, ...] = (),
) -> x509.Certificate:
    pem = authority.sign_csr(
        csr_pem, name=name, role=role, validity_days=30, node_addresses=node_addresses, now=NOW
    )
    return x509.load_pem_x509_certificate(pem)


def san_values(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        names.get_values_for_type(x509.DNSName),
        [str(address) for address in names.get_values_for_type(x509.IPAddress)],
    )


def extended_usages(certificate: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_leaf_verifies_against_the_ca(dated_ca: CertificateAuthority, csr: bytes) -> None:
    certificate = sign(dated_ca, csr)
    certificate.verify_directly_issued_by(dated_ca.certificate)
    assert certificate.issuer == dated_ca.certificate.subject


def test_leaf_does_not_verify_against_another_ca(
    dated_ca: CertificateAuthority, other_ca: CertificateAuthority, csr: bytes
) -> None:
    certificate = sign(dated_ca, csr)
    with pytest.raises(ValueError, match=r"[Ii]ssuer"):
        certificate.verify_directly_issued_by(other_ca.certificate)


def test_subject_comes_from_the_ca_not_from_the_csr(dated_ca: CertificateAuthority) -> None:
    key = generate_private_key()
    greedy_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "admin"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "root"),
                ]
            )
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NODE_TLS_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    certificate = sign(dated_ca, greedy_csr, name="mallory", role=Role.VIEWER)
    assert certificate.subject.rfc4514_string() == "CN=mallory,OU=viewer"
    assert san_values(certificate) == (["mallory.user.murmur"], [])
    constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca is False
    assert certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_leaf_validity_allows_clock_skew(dated_ca: CertificateAuthority, csr: bytes) -> None:
    certificate = sign(dated_ca, csr)
    assert certificate.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert certificate.not_valid_after_utc == NOW + timedelta(days=30)


def test_leaf_never_outlives_its_ca(tmp_path: Path, csr: bytes) -> None:
    short_ca = CertificateAuthority.create(tmp_path / "ca", validity_days=10, now=NOW)
    pem = short_ca.sign_csr(csr, name="alice", role=Role.MEMBER, validity_days=365, now=NOW)
    certificate = x509.load_pem_x509_certificate(pem)
    assert certificate.not_valid_after_utc == short_ca.certificate.not_valid_after_utc


def test_expired_ca_signs_nothing(tmp_path: Path, csr: bytes) -> None:
    short_ca = CertificateAuthority.create(tmp_path / "ca", validity_days=10, now=NOW)
    with pytest.raises(CertificateExpiredError, match="lab CA expired"):
        short_ca.sign_csr(
            csr, name="alice", role=Role.MEMBER, validity_days=1, now=NOW + timedelta(days=11)
        )


def test_serials_are_random_and_large(dated_ca: CertificateAuthority, csr: bytes) -> None:
    serials = {sign(dated_ca, csr).serial_number for _ in range(5)}
    assert len(serials) == 5
    assert all(serial > 2**64 for serial in serials)


def test_leaf_key_usage_and_identifiers(dated_ca: CertificateAuthority, csr: bytes) -> None:
    certificate = sign(dated_ca, csr)
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    authority_key_id = certificate.extensions.get_extension_for_class(
        x509.AuthorityKeyIdentifier
    ).value
    ca_key_id = dated_ca.certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value
    assert authority_key_id.key_identifier == ca_key_id.digest


def test_node_certificate_sans_and_usages(dated_ca: CertificateAuthority, csr: bytes) -> None:
    certificate = sign(
        dated_ca,
        csr,
        name="gpu-07",
        role=Role.NODE,
        node_addresses=("10.1.2.3:7000", "[fd00::5]:7000", "::1", "GPU7.lab.example", "10.1.2.3"),
    )
    dns_names, ip_addresses = san_values(certificate)
    assert dns_names == [NODE_TLS_NAME, "gpu-07.node.murmur", "localhost", "gpu7.lab.example"]
    assert ip_addresses == ["10.1.2.3", "fd00::5", "::1"]
    assert extended_usages(certificate) == {
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.SERVER_AUTH,
    }
    assert certificate.subject.rfc4514_string() == "CN=gpu-07,OU=node"


@pytest.mark.parametrize("role", USER_ROLES)
def test_user_certificates_are_client_only_and_never_node_named(
    dated_ca: CertificateAuthority, csr: bytes, role: Role
) -> None:
    certificate = sign(dated_ca, csr, name="bob", role=role)
    assert san_values(certificate) == (["bob.user.murmur"], [])
    assert extended_usages(certificate) == {ExtendedKeyUsageOID.CLIENT_AUTH}


def test_node_addresses_on_a_user_certificate_are_refused(
    dated_ca: CertificateAuthority, csr: bytes
) -> None:
    with pytest.raises(ValueError, match="only to node certificates"):
        sign(dated_ca, csr, role=Role.ADMIN, node_addresses=("10.0.0.1",))


@pytest.mark.parametrize(
    "address", ["", "bad host", "exa mple:7000", "[::1", "other.node.murmur", "node.murmur:1"]
)
def test_bad_node_address_is_refused(
    dated_ca: CertificateAuthority, csr: bytes, address: str
) -> None:
    with pytest.raises(InvalidNameError, match="invalid node address"):
        sign(dated_ca, csr, name="gpu-01", role=Role.NODE, node_addresses=(address,))


@pytest.mark.parametrize("name", ["", "Alice", "-x", "a b", "x" * 64, "ünï"])
def test_invalid_name_is_refused(dated_ca: CertificateAuthority, csr: bytes, name: str) -> None:
    with pytest.raises(InvalidNameError, match="invalid name"):
        sign(dated_ca, csr, name=name)


def test_non_positive_validity_is_refused(dated_ca: CertificateAuthority, csr: bytes) -> None:
    with pytest.raises(ValueError, match="validity_days"):
        dated_ca.sign_csr(csr, name="alice", role=Role.MEMBER, validity_days=0, now=NOW)


def test_ed25519_csr_is_accepted(dated_ca: CertificateAuthority) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    certificate = sign(dated_ca, make_csr(key, "edward"))
    assert isinstance(certificate.public_key(), ed25519.Ed25519PublicKey)
    certificate.verify_directly_issued_by(dated_ca.certificate)


@pytest.mark.parametrize(
    ("key", "described"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA-1024"),
        (ec.generate_private_key(ec.SECP384R1()), "EC secp384r1"),
    ],
)
def test_other_key_types_are_refused(
    dated_ca: CertificateAuthority,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    described: str,
) -> None:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(CsrError, match=f"{described} key; only EC P-256 and Ed25519"):
        sign(dated_ca, request)


def test_csr_with_a_forged_signature_is_refused(dated_ca: CertificateAuthority) -> None:
    request = x509.load_pem_x509_csr(make_csr(generate_private_key(), "victim"))
    der = bytearray(request.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte belongs to the signature
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CsrError, match="signature does not match"):
        sign(dated_ca, forged)


def test_csr_signed_by_a_different_key_is_refused(dated_ca: CertificateAuthority) -> None:
    holder, impostor = generate_private_key(), generate_private_key()
    honest = x509.load_pem_x509_csr(make_csr(holder, "victim"))
    # Same request body, signature made by another key: proves nothing about `holder`.
    signed_by_impostor = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(honest.subject)
        .sign(impostor, hashes.SHA256())
    )
    body = honest.tbs_certrequest_bytes
    spliced = bytearray(signed_by_impostor.public_bytes(serialization.Encoding.DER))
    impostor_body = signed_by_impostor.tbs_certrequest_bytes
    start = spliced.index(impostor_body)
    assert len(body) == len(impostor_body)
    spliced[start : start + len(body)] = body
    request = x509.load_der_x509_csr(bytes(spliced)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CsrError, match="signature does not match"):
        sign(dated_ca, request)


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"hello",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        b"-----BEGIN CERTIFICATE REQUEST-----\n",
    ],
)
def test_garbled_csr_is_refused(dated_ca: CertificateAuthority, garbage: bytes) -> None:
    with pytest.raises(CsrError, match="not a valid PEM certificate signing request"):
        sign(dated_ca, garbage)


def test_a_certificate_is_not_a_csr(dated_ca: CertificateAuthority) -> None:
    with pytest.raises(CsrError):
        sign(dated_ca, dated_ca.certificate_pem)


@settings(max_examples=40, deadline=None)
@given(name=st.from_regex(NAME_PATTERN, fullmatch=True), role=st.sampled_from(list(Role)))
def test_any_valid_name_round_trips(
    dated_ca: CertificateAuthority, csr: bytes, name: str, role: Role
) -> None:
    pem = dated_ca.sign_csr(csr, name=name, role=role, validity_days=7, now=NOW)
    identity = identity_from_certificate(pem)
    assert identity.name == name
    assert identity.role is role
    assert identity.not_after == NOW + timedelta(days=7)
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert identity_from_certificate(der) == identity


def test_ip_san_is_an_ip_address(dated_ca: CertificateAuthority, csr: bytes) -> None:
    certificate = sign(dated_ca, csr, name="gpu-01", role=Role.NODE, node_addresses=("127.0.0.2",))
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.2")]
