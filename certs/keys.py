"""Private keys and certificate signing requests: which key types we accept, and how.

Murmur keys are EC P-256 (what we generate) or Ed25519 (accepted from requesters and
in files). Anything else, RSA included, is refused: one small set of algorithms is one
small set to get right.
"""

from __future__ import annotations

from typing import TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from murmur.certs.roles import validate_name

__all__ = [
    "PrivateKey",
    "PublicKey",
    "describe_public_key",
    "generate_private_key",
    "is_accepted_public_key",
    "make_csr",
    "private_key_pem",
    "public_key_der",
    "signature_hash",
]

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """Generate a new EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: PrivateKey) -> bytes:
    """Serialise `key` as unencrypted PKCS#8 PEM (file permissions protect it)."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def make_csr(key: PrivateKey, name: str) -> bytes:
    """Make a PEM certificate signing request for `name`, signed by `key`.

    The CA ignores the subject a CSR asks for and writes its own, so the CSR carries
    only the name, for the operator's logs.

    Raises:
        InvalidNameError: `name` breaks the naming rule.
    """
    validate_name(name)
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, signature_hash(key))
    )
    return request.public_bytes(serialization.Encoding.PEM)


def signature_hash(key: PrivateKey) -> hashes.SHA256 | None:
    """The hash to sign with `key`: SHA-256 for ECDSA, none for Ed25519 (built in)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    return hashes.SHA256()


def is_accepted_public_key(key: object) -> bool:
    """Whether `key` is EC P-256 or Ed25519, the only key types Murmur accepts."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return True
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)


def describe_public_key(key: object) -> str:
    """A short human name for a key type, for error messages ("RSA-1024")."""
    key_size = getattr(key, "key_size", None)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    kind = type(key).__name__.removesuffix("PublicKey").removeprefix("_")
    return f"{kind}-{key_size}" if isinstance(key_size, int) else kind


def public_key_der(key: PublicKey | PrivateKey) -> bytes:
    """The DER SubjectPublicKeyInfo of a key (of a private key: of its public half)."""
    public: PublicKey
    if isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        public = key.public_key()
    else:
        public = key
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
