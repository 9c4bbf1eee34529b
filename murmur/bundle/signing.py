"""The release key: Ed25519, via ``cryptography``.

The private key is PKCS#8 PEM, written 0600 and never read by anything but
``bundle create``; the public key is SubjectPublicKeyInfo PEM (``KEY.pub``), what a
lab carries to its servers apart from the bundle, since a key that travels inside
the bundle proves nothing. A signature file holds the 64-byte signature in base64 on
one line, so it survives any copy and can be read by eye.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from murmur.bundle.errors import BundleError

SIGNATURE_BYTES = 64


def public_path(key_path: Path) -> Path:
    """``KEY.pub`` beside ``KEY``."""
    return key_path.with_name(key_path.name + ".pub")


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """``sha256:`` and the first 32 hex digits of the SHA-256 of the raw public key:
    what keygen, create and verify print, to compare by eye or over the phone."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def generate_key(key_path: Path, *, overwrite: bool = False) -> Ed25519PublicKey:
    """Writes a new key pair: ``key_path`` (0600, from its first byte) and ``.pub``.

    Raises:
        BundleError: a file is already there (unless ``overwrite``), or cannot be written.
    """
    public = public_path(key_path)
    if not overwrite:
        for path in (key_path, public):
            if path.exists():
                raise BundleError(f"{path} exists: a release key is not replaced by accident")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        _write_private(key_path, private_pem)
        public.write_bytes(public_pem)
        public.chmod(0o644)
    except OSError as exc:
        raise BundleError(f"cannot write the key: {exc}") from exc
    return key.public_key()


def _write_private(path: Path, data: bytes) -> None:
    """Created 0600 (O_EXCL unless replacing), so the key is never readable by others,
    not even between its creation and a chmod."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Raises: BundleError: missing, unreadable, or not an Ed25519 private key."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise BundleError(f"cannot read the release key {path}: {exc.strerror or exc}") from exc
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 key (bundle keygen makes one)")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Raises: BundleError: missing, unreadable, or not an Ed25519 public key."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise BundleError(f"cannot read the public key {path}: {exc.strerror or exc}") from exc
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path} is not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path} is not an Ed25519 public key (the KEY.pub of bundle keygen)")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    """The signature file's text: base64 of the signature and a newline."""
    return base64.b64encode(key.sign(data)).decode("ascii") + "\n"


def check_signature(key: Ed25519PublicKey, data: bytes, signature_text: str) -> None:
    """Raises: BundleError: the text is no signature, or not this key's over ``data``."""
    try:
        signature = base64.b64decode(signature_text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BundleError("the signature file is not base64") from None
    if len(signature) != SIGNATURE_BYTES:
        raise BundleError(f"the signature is {len(signature)} bytes, not {SIGNATURE_BYTES}")
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise BundleError(
            f"bad signature: SHA256SUMS was changed, or signed by another key than "
            f"{fingerprint(key)}"
        ) from None
