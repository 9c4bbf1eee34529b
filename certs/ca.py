"""The lab certificate authority: creates itself, signs CSRs, issues identities.

One CA per lab. Its key lives on the first server (`murmur ca init`), in `ca.key`
(0600) next to `ca.crt`. Nodes and users never receive the CA key: they send a CSR and
get back a certificate whose subject the CA writes itself (CN = name, OU = role), so a
requester cannot ask for a role it was not given.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from murmur.certs.errors import (
    CAExistsError,
    CANotFoundError,
    CertificateExpiredError,
    CertificateFileError,
    CsrError,
)
from murmur.certs.files import create_private_directory, write_private_file, write_public_file
from murmur.certs.identity import IdentityBundle, certificate_fingerprint
from murmur.certs.keys import (
    PrivateKey,
    describe_public_key,
    generate_private_key,
    is_accepted_public_key,
    make_csr,
    private_key_pem,
    public_key_der,
    signature_hash,
)
from murmur.certs.roles import Role, validate_name
from murmur.certs.san import subject_alternative_names
from murmur.certs.times import resolve_now

__all__ = [
    "CA_CERTIFICATE_FILE",
    "CA_KEY_FILE",
    "CLOCK_SKEW_ALLOWANCE",
    "CertificateAuthority",
]

CA_KEY_FILE = "ca.key"
CA_CERTIFICATE_FILE = "ca.crt"

CLOCK_SKEW_ALLOWANCE = timedelta(minutes=5)
"""Certificates start this long before they are signed, for machines whose clocks lag."""


class CertificateAuthority:
    """The lab CA: an EC P-256 (or Ed25519) key and its self-signed certificate."""

    def __init__(self, private_key: PrivateKey, certificate: x509.Certificate) -> None:
        """Pair a CA key with its certificate; use `create` or `load` instead.

        Raises:
            ValueError: the key does not match the certificate, or it is not a CA.
        """
        problem = _ca_pair_problem(private_key, certificate)
        if problem is not None:
            raise ValueError(problem)
        self._private_key = private_key
        self._certificate = certificate

    def __repr__(self) -> str:
        return f"CertificateAuthority(fingerprint={self.fingerprint!r})"

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        common_name: str = "Murmur lab CA",
        validity_days: int = 3650,
        now: datetime | None = None,
        passphrase: bytes | None = None,
    ) -> CertificateAuthority:
        """Create a new lab CA and write `ca.key` (0600) and `ca.crt` into `directory`.

        Args:
            directory: where the CA lives; created with mode 0700 if missing.
            common_name: the CA certificate's subject CN.
            validity_days: how long the CA certificate is valid.
            now: the current time (tests inject it).
            passphrase: encrypt `ca.key` with it (None: the key is stored in the clear).

        Raises:
            CAExistsError: `directory` already holds `ca.key` or `ca.crt`.
            CertificateFileError: the files cannot be written.
            ValueError: `validity_days` is not positive.
        """
        _require_positive_days(validity_days)
        for existing in (directory / CA_KEY_FILE, directory / CA_CERTIFICATE_FILE):
            if existing.exists():
                raise CAExistsError(
                    f"a lab CA already exists at {existing}; refusing to overwrite it "
                    "(move it away first if you really mean to start a new CA)"
                )
        authority = cls.generate(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
            validity_days=validity_days,
            now=now,
        )
        authority.write(directory, passphrase=passphrase)
        return authority

    @classmethod
    def generate(
        cls, subject: x509.Name, *, validity_days: int = 3650, now: datetime | None = None
    ) -> CertificateAuthority:
        """A new CA key and self-signed certificate, in memory only.

        Raises:
            ValueError: `validity_days` is not positive.
        """
        _require_positive_days(validity_days)
        moment = resolve_now(now)
        key = generate_private_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(moment - CLOCK_SKEW_ALLOWANCE)
            .not_valid_after(moment + timedelta(days=validity_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, signature_hash(key))
        )
        return cls(key, certificate)

    def successor(
        self, *, validity_days: int = 3650, now: datetime | None = None
    ) -> CertificateAuthority:
        """A new CA to rotate to: a new key, and this CA's subject name.

        The same name makes the cross-signed certificate (:meth:`cross_sign`)
        *self-issued*, which path-length constraints do not count (RFC 5280,
        6.1.4): every lab CA says ``path_length=0``, and a verifier that trusts
        only this CA still accepts leaf ← cross ← this. Certificates name their
        issuer's key (authority key identifier), so two CAs of one name are told
        apart by key, not by name.
        """
        return CertificateAuthority.generate(
            self._certificate.subject, validity_days=validity_days, now=now
        )

    def cross_sign(self, successor: CertificateAuthority, *, now: datetime | None = None) -> bytes:
        """``successor``'s name and key certified by this CA (PEM): presented after a
        leaf of the successor, it lets a peer that trusts only this CA verify it,
        for as long as both CAs are valid.

        Raises:
            CertificateExpiredError: this CA has expired.
        """
        moment = resolve_now(now)
        not_after = min(
            self._certificate.not_valid_after_utc, successor.certificate.not_valid_after_utc
        )
        if moment >= not_after:
            raise CertificateExpiredError(
                f"the lab CA expired at {not_after.isoformat()}; it cannot cross-sign"
            )
        public_key = successor.certificate.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(successor.certificate.subject)
            .issuer_name(self._certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(moment - CLOCK_SKEW_ALLOWANCE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), False)
            .add_extension(self._authority_key_identifier(), critical=False)
            .sign(self._private_key, signature_hash(self._private_key))
        )
        return certificate.public_bytes(serialization.Encoding.PEM)

    def write(self, directory: Path, *, passphrase: bytes | None = None) -> None:
        """Write `ca.crt` (0644) and `ca.key` (0600, encrypted when `passphrase` is
        given) into `directory`, replacing what is there, each atomically.

        Raises:
            CertificateFileError: the files cannot be written.
        """
        create_private_directory(directory)
        # The certificate first: `ca.key` is what marks a complete CA.
        write_public_file(directory / CA_CERTIFICATE_FILE, self.certificate_pem)
        write_private_file(directory / CA_KEY_FILE, self.private_key_pem(passphrase))

    def private_key_pem(self, passphrase: bytes | None = None) -> bytes:
        """The CA key, PKCS#8 PEM; encrypted with `passphrase` when one is given.

        For `ca.key` and for handing the key to another voter over mutual TLS
        (node/identity/ca_custody.py); never for anything else.
        """
        if not passphrase:
            return private_key_pem(self._private_key)
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )

    @classmethod
    def from_pem(
        cls, key_pem: bytes, certificate_pem: bytes, *, passphrase: bytes | None = None
    ) -> CertificateAuthority:
        """A CA from its key and certificate PEM (what another voter handed over).

        Raises:
            CertificateFileError: either is corrupt, the key is encrypted and no (or
                the wrong) passphrase was given, or they do not belong together.
        """
        key = _load_key(key_pem, passphrase, "the CA key")
        certificate = _load_certificate(certificate_pem, "the CA certificate")
        problem = _ca_pair_problem(key, certificate)
        if problem is not None:
            raise CertificateFileError(f"cannot load the lab CA: {problem}")
        return cls(key, certificate)

    @staticmethod
    def key_is_encrypted(directory: Path) -> bool:
        """Whether `ca.key` in `directory` is stored encrypted (False when absent)."""
        try:
            head = (directory / CA_KEY_FILE).read_bytes()[:64]
        except OSError:
            return False
        return b"ENCRYPTED" in head

    @classmethod
    def load(cls, directory: Path, *, passphrase: bytes | None = None) -> CertificateAuthority:
        """Load the lab CA from `directory`.

        Args:
            directory: where `ca.key` and `ca.crt` are.
            passphrase: what `ca.key` is encrypted with, if it is; ignored for a key
                stored in the clear.

        Raises:
            CANotFoundError: `directory` holds no `ca.key`.
            CertificateFileError: a file is unreadable, corrupt, encrypted without the
                right passphrase given, or they do not match.
        """
        key_path = directory / CA_KEY_FILE
        certificate_path = directory / CA_CERTIFICATE_FILE
        if not key_path.exists():
            raise CANotFoundError(f"no lab CA at {directory} ({key_path} is missing)")
        key_data = _read(key_path)
        certificate_data = _read(certificate_path)
        key = _load_key(key_data, passphrase, f"the CA key {key_path}")
        certificate = _load_certificate(certificate_data, f"the CA certificate {certificate_path}")
        problem = _ca_pair_problem(key, certificate)
        if problem is not None:
            raise CertificateFileError(f"cannot load the lab CA from {directory}: {problem}")
        return cls(key, certificate)

    @staticmethod
    def exists(directory: Path) -> bool:
        """Whether `directory` holds a lab CA key."""
        return (directory / CA_KEY_FILE).exists()

    @property
    def certificate(self) -> x509.Certificate:
        """The CA's self-signed certificate."""
        return self._certificate

    @property
    def certificate_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return self._certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def fingerprint(self) -> str:
        """Lowercase hex SHA-256 of the CA certificate's DER; join tokens pin it."""
        return certificate_fingerprint(self._certificate)

    def sign_csr(
        self,
        csr_pem: bytes,
        *,
        name: str,
        role: Role,
        validity_days: int,
        node_addresses: Sequence[str] = (),
        now: datetime | None = None,
        not_before_floor: datetime | None = None,
    ) -> bytes:
        """Sign a CSR into a leaf certificate for `name` with `role`.

        The CSR contributes only its public key: the subject and every extension come
        from the arguments. The certificate is valid from `now` minus five minutes (for
        clock skew) for `validity_days`, but never beyond the CA's own expiry.

        Node certificates carry DNS SANs `node.murmur`, `<name>.node.murmur` and
        `localhost`, plus one SAN per entry of `node_addresses` (an IP SAN for an IP,
        a DNS SAN for a host name; a `:port` suffix is dropped) and may serve TLS.
        User certificates carry only the DNS SAN `<name>.user.murmur` and are
        client-only.

        Args:
            csr_pem: the PEM CSR; its key must be EC P-256 or Ed25519.
            name: the subject name (CN).
            role: the subject role (OU).
            validity_days: how long the certificate is valid.
            node_addresses: addresses a node listens on ("10.0.0.5:7000", "gpu1").
            now: the current time (tests inject it).
            not_before_floor: the certificate starts no earlier than this (aware): a
                name revoked at T gets certificates that start after T, which the
                cluster's deny list accepts (murmur.node.deny_list).

        Returns:
            The certificate, PEM.

        Raises:
            CsrError: the CSR is garbled, its signature is wrong, or its key type is
                refused.
            InvalidNameError: `name` or a node address is not acceptable.
            CertificateExpiredError: the CA itself has expired.
            ValueError: `validity_days` is not positive, or `node_addresses` were given
                for a user certificate.
        """
        validate_name(name)
        role = Role(role)
        _require_positive_days(validity_days)
        if node_addresses and role is not Role.NODE:
            raise ValueError(f"node addresses apply only to node certificates, not {role}")
        public_key = _csr_public_key(csr_pem)
        moment = resolve_now(now)
        ca_not_after = self._certificate.not_valid_after_utc
        if moment >= ca_not_after:
            raise CertificateExpiredError(
                f"the lab CA expired at {ca_not_after.isoformat()}; it cannot sign certificates"
            )
        not_after = min(moment + timedelta(days=validity_days), ca_not_after)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if role is Role.NODE:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_start(moment, not_before_floor))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.SubjectAlternativeName(subject_alternative_names(name, role, node_addresses)),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._authority_key_identifier(), critical=False)
            .sign(self._private_key, signature_hash(self._private_key))
        )
        return certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        *,
        name: str,
        role: Role,
        validity_days: int,
        node_addresses: Sequence[str] = (),
        now: datetime | None = None,
    ) -> IdentityBundle:
        """Generate a key here and sign a certificate for it: a complete identity.

        For identities made where the CA lives: the admin of `ca init`, users of
        `user add`, and the CA-holding node's own certificate.

        Raises:
            As `sign_csr`.
        """
        key = generate_private_key()
        certificate_pem = self.sign_csr(
            make_csr(key, name),
            name=name,
            role=role,
            validity_days=validity_days,
            node_addresses=node_addresses,
            now=now,
        )
        return IdentityBundle(
            key_pem=private_key_pem(key),
            certificate_pem=certificate_pem,
            ca_certificate_pem=self.certificate_pem,
        )

    def _authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        try:
            subject_key_id = self._certificate.extensions.get_extension_for_class(
                x509.SubjectKeyIdentifier
            )
        except x509.ExtensionNotFound:
            return x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self._private_key.public_key()
            )
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(subject_key_id.value)


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _ca_pair_problem(key: PrivateKey, certificate: x509.Certificate) -> str | None:
    certificate_key = certificate.public_key()
    if not isinstance(certificate_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        return f"the CA certificate has an unsupported {describe_public_key(certificate_key)} key"
    if public_key_der(key) != public_key_der(certificate_key):
        return "the CA key does not match the CA certificate"
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return "the CA certificate has no BasicConstraints extension"
    if not constraints.value.ca:
        return "the CA certificate is not marked as a CA (BasicConstraints ca=False)"
    return None


def _load_key(data: bytes, passphrase: bytes | None, what: str) -> PrivateKey:
    encrypted = b"ENCRYPTED" in data[:64]
    if encrypted and not passphrase:
        raise CertificateFileError(
            f"cannot load {what}: it is encrypted and no passphrase was given"
        )
    try:
        key = serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        problem = "wrong passphrase or corrupt PEM" if encrypted else "corrupt PEM"
        raise CertificateFileError(f"cannot load {what}: {problem}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise CertificateFileError(
            f"cannot load {what}: {describe_public_key(key.public_key())} keys are not supported"
        )
    return key


def _load_certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertificateFileError(f"cannot load {what}: corrupt PEM") from None


def _csr_public_key(csr_pem: bytes) -> ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey:
    try:
        request = x509.load_pem_x509_csr(csr_pem)
    except ValueError as error:
        raise CsrError(f"not a valid PEM certificate signing request: {error}") from None
    try:
        public_key = request.public_key()
        signature_valid = request.is_signature_valid
    except (ValueError, UnsupportedAlgorithm, InvalidSignature) as error:
        raise CsrError(f"cannot read the CSR's public key: {error}") from None
    if not is_accepted_public_key(public_key) or not isinstance(
        public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    ):
        raise CsrError(
            f"the CSR uses a {describe_public_key(public_key)} key; "
            "only EC P-256 and Ed25519 keys are accepted"
        )
    if not signature_valid:
        raise CsrError("the CSR's signature does not match its public key")
    return public_key


def _require_positive_days(validity_days: int) -> None:
    if validity_days <= 0:
        raise ValueError(f"validity_days must be positive, got {validity_days}")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise CertificateFileError(f"cannot read {path}: {error.strerror or error}") from error


def _start(moment: datetime, floor: datetime | None) -> datetime:
    """A leaf's ``not_before``: backdated for clock skew, but never before ``floor``."""
    start = moment - CLOCK_SKEW_ALLOWANCE
    return start if floor is None else max(start, floor)
