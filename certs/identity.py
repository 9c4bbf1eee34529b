"""Who a certificate says its holder is, and the identity bundle file that holds one.

An identity bundle is one file of PEM blocks, in this order: the holder's private
key, the holder's certificate, then the certificates it presents after its own
(intermediates: during a CA rotation, the new CA cross-signed by the old one), then
the lab CA certificates it trusts (the trust anchors, self-signed: one, or two while
a rotation's overlap window is open), one of which issued the holder's certificate.
Lines starting with `# ` may precede the blocks (we write a short header saying whose
identity it is). One file is easy to hand to a user, and every part is needed to open
an mTLS connection, so they travel together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from murmur.certs.errors import IdentityError, IdentityFileError
from murmur.certs.files import create_private_directory, write_private_file
from murmur.certs.keys import (
    generate_private_key,
    is_accepted_public_key,
    make_csr,
    private_key_pem,
    public_key_der,
)
from murmur.certs.pem import pem_blocks, split_blocks, with_final_newline
from murmur.certs.roles import Role
from murmur.certs.validity import CertificateIdentity, check_validity

__all__ = [
    "CertificateIdentity",
    "IdentityBundle",
    "certificate_fingerprint",
    "check_validity",
    "generate_private_key",
    "identity_from_certificate",
    "is_ca_certificate",
    "load_certificate",
    "make_csr",
    "private_key_pem",
]

MISSING_IDENTITY_HINT = "run `murmur ca init` or ask an admin for `murmur user add`"


def load_certificate(pem_or_der: bytes) -> x509.Certificate:
    """Parse a certificate given as PEM or DER.

    Raises:
        ValueError: the bytes are not a certificate.
    """
    if b"-----BEGIN" in pem_or_der:
        return x509.load_pem_x509_certificate(pem_or_der)
    return x509.load_der_x509_certificate(pem_or_der)


def certificate_fingerprint(certificate: x509.Certificate) -> str:
    """The lowercase hex SHA-256 of the certificate's DER encoding."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def is_ca_certificate(certificate: x509.Certificate) -> bool:
    """Whether the certificate says it is a CA (BasicConstraints ca=True)."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def identity_from_certificate(pem_or_der: bytes) -> CertificateIdentity:
    """Read the name, role, serial and validity out of a certificate.

    This trusts the certificate's content; checking that the lab CA issued it is the
    TLS layer's job.

    Raises:
        IdentityError: the bytes are not a certificate, or it lacks a CN, an OU, or
            names an unknown role.
    """
    try:
        certificate = load_certificate(pem_or_der)
    except ValueError as error:
        raise IdentityError(f"not a valid certificate: {error}") from error
    return _identity_of(certificate)


def _identity_of(certificate: x509.Certificate) -> CertificateIdentity:
    name = _single_attribute(certificate, NameOID.COMMON_NAME, "common name (CN)")
    role_text = _single_attribute(certificate, NameOID.ORGANIZATIONAL_UNIT_NAME, "role (OU)")
    try:
        role = Role(role_text)
    except ValueError:
        known = ", ".join(role.value for role in Role)
        raise IdentityError(
            f"certificate for {name!r} has unknown role {role_text!r} (known: {known})"
        ) from None
    return CertificateIdentity(
        name=name,
        role=role,
        serial=format(certificate.serial_number, "x"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
    )


def _single_attribute(certificate: x509.Certificate, oid: x509.ObjectIdentifier, what: str) -> str:
    attributes = certificate.subject.get_attributes_for_oid(oid)
    if len(attributes) != 1:
        problem = "has no" if not attributes else "has more than one"
        raise IdentityError(
            f"certificate {certificate.subject.rfc4514_string()!r} {problem} {what}"
        )
    value = attributes[0].value
    text = value if isinstance(value, str) else value.decode("utf-8", "replace")
    if not text:
        raise IdentityError(f"certificate has an empty {what}")
    return text


@dataclass(frozen=True)
class IdentityBundle:
    """A private key, its certificate and the lab CA certificates, kept in one file."""

    key_pem: bytes
    """The holder's private key, PKCS#8 PEM, unencrypted."""
    certificate_pem: bytes
    """The holder's certificate, PEM."""
    ca_certificate_pem: bytes
    """The lab CA certificates the holder trusts (PEM, one after the other; the one
    that issued `certificate_pem` among them): TLS's root certificates."""
    intermediate_pem: bytes = b""
    """Certificates presented after the holder's own (PEM; usually none): during a
    CA rotation, the new CA signed by the old, so that a peer that trusts only the
    old CA still verifies a certificate of the new one."""

    @property
    def certificate_chain_pem(self) -> bytes:
        """What the holder presents in a TLS handshake: its certificate, then the
        intermediates."""
        return with_final_newline(self.certificate_pem) + self.intermediate_pem

    @property
    def ca_certificates(self) -> list[x509.Certificate]:
        """The trusted lab CA certificates, in file order."""
        return [
            x509.load_pem_x509_certificate(block)
            for _, block in pem_blocks(self.ca_certificate_pem)
        ]

    @property
    def ca_fingerprints(self) -> list[str]:
        """The trusted lab CAs' fingerprints, in file order."""
        return [certificate_fingerprint(ca) for ca in self.ca_certificates]

    @property
    def identity(self) -> CertificateIdentity:
        """Name, role, serial and validity of the holder's certificate.

        Raises:
            IdentityError: the certificate lacks a name or role.
        """
        return identity_from_certificate(self.certificate_pem)

    @property
    def ca_fingerprint(self) -> str:
        """Lowercase hex SHA-256 of the DER of the CA certificate that issued the
        holder's; join tokens pin it."""
        return certificate_fingerprint(self.issuing_ca_certificate)

    @property
    def issuing_ca_certificate(self) -> x509.Certificate:
        """The trusted CA certificate that issued the holder's certificate.

        Raises:
            IdentityFileError: none of them did (a bundle from ``parse`` always has it).
        """
        certificate = x509.load_pem_x509_certificate(self.certificate_pem)
        issuer = _issuer_among(certificate, self.ca_certificates)
        if issuer is None:
            raise IdentityFileError(
                "the certificate was not issued by any CA certificate of its identity"
            )
        return issuer

    def with_trust(
        self, ca_certificate_pem: bytes, intermediate_pem: bytes = b""
    ) -> IdentityBundle:
        """The same key and certificate with other trust anchors and intermediates
        (a CA rotation's overlap window opens or closes)."""
        return IdentityBundle(
            key_pem=self.key_pem,
            certificate_pem=self.certificate_pem,
            ca_certificate_pem=ca_certificate_pem,
            intermediate_pem=intermediate_pem,
        )

    def to_pem(self) -> bytes:
        """The file content: a comment header, then key, certificate, intermediate
        and CA blocks."""
        header = _header_for(self.certificate_pem)
        blocks = [self.key_pem, self.certificate_pem]
        blocks += [block for _, block in pem_blocks(self.intermediate_pem)]
        blocks += [block for _, block in pem_blocks(self.ca_certificate_pem)]
        return header + b"".join(with_final_newline(block) for block in blocks)

    def write(self, path: Path) -> None:
        """Write the bundle to `path` with mode 0600, creating its directory (0700).

        Raises:
            CertificateFileError: the file or its directory cannot be written.
        """
        create_private_directory(path.parent)
        write_private_file(path, self.to_pem())

    @classmethod
    def read(cls, path: Path) -> IdentityBundle:
        """Read and check an identity bundle file.

        Raises:
            IdentityFileError: the file is missing, unreadable, lacks a block, holds a
                corrupt block, or its key, certificate and CA do not belong together.
        """
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IdentityFileError(f"no identity at {path}; {MISSING_IDENTITY_HINT}") from None
        except OSError as error:
            raise IdentityFileError(
                f"cannot read identity {path}: {error.strerror or error}"
            ) from error
        return cls.parse(data, source=str(path))

    @classmethod
    def parse(cls, data: bytes, *, source: str = "<identity>") -> IdentityBundle:
        """Parse and check the content of an identity bundle file.

        Args:
            data: the file content.
            source: where it came from, for error messages.

        Raises:
            IdentityFileError: as for `read`.
        """
        key_block, certificate_block, rest = split_blocks(data, source)
        key = _load_key(key_block, source)
        certificate = _load_block_certificate(certificate_block, "certificate", source)
        anchors: list[tuple[bytes, x509.Certificate]] = []
        intermediates: list[bytes] = []
        for block in rest:
            loaded = _load_block_certificate(block, "CA certificate", source)
            if loaded.subject == loaded.issuer and _issuer_among(loaded, [loaded]) is not None:
                anchors.append((block, loaded))
            elif anchors:
                raise IdentityFileError(
                    f"identity file {source}: a certificate that is not self-signed "
                    "after the CA certificates"
                )
            else:
                intermediates.append(block)
        if not anchors:
            raise IdentityFileError(f"identity file {source}: missing the CA certificate block")
        if public_key_der(key) != _certificate_public_key_der(certificate):
            raise IdentityFileError(
                f"identity file {source}: the private key does not match the certificate"
            )
        if _issuer_among(certificate, [loaded for _, loaded in anchors]) is None:
            raise IdentityFileError(
                f"identity file {source}: the certificate was not issued by the CA "
                "certificate in the same file"
            )
        try:
            _identity_of(certificate)
        except IdentityError as error:
            raise IdentityFileError(f"identity file {source}: {error}") from None
        return cls(
            key_pem=key_block,
            certificate_pem=certificate_block,
            ca_certificate_pem=b"".join(block for block, _ in anchors),
            intermediate_pem=b"".join(intermediates),
        )


def _issuer_among(
    certificate: x509.Certificate, candidates: list[x509.Certificate]
) -> x509.Certificate | None:
    """The candidate whose key signed ``certificate`` and whose subject is its issuer."""
    for candidate in candidates:
        try:
            certificate.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return candidate
    return None


def _certificate_public_key_der(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_key(block: bytes, source: str) -> ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(block, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise IdentityFileError(
            f"identity file {source}: the private key block is corrupt or encrypted"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) or not (
        is_accepted_public_key(key.public_key())
    ):
        raise IdentityFileError(
            f"identity file {source}: the private key is not EC P-256 or Ed25519"
        )
    return key


def _load_block_certificate(block: bytes, what: str, source: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(block)
    except ValueError:
        raise IdentityFileError(f"identity file {source}: the {what} block is corrupt") from None


def _header_for(certificate_pem: bytes) -> bytes:
    try:
        identity = identity_from_certificate(certificate_pem)
    except IdentityError:
        return b"# Murmur identity. Keep this file private: it holds a private key.\n"
    return (
        f"# Murmur identity of {identity.name!r}, role {identity.role.value}, "
        f"valid until {identity.not_after.isoformat()}.\n"
        "# Keep this file private: it holds a private key.\n"
    ).encode()
