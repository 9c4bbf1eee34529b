"""``murmur bundle verify DIR --key PUB``: is this exactly what the release key signed?

In this order, stopping at the first failure (fail closed):

1. ``SHA256SUMS.sig`` is a valid Ed25519 signature of ``SHA256SUMS`` by the key;
2. every line of ``SHA256SUMS`` is well formed, names a safe relative path once;
3. the bundle holds exactly those files besides the two: nothing missing, nothing
   extra, no links, no special files;
4. every file's SHA-256 is the listed one;
5. ``manifest.json`` reads, and what it names is in the bundle.

The signature is checked before any listed path is even looked at, so nothing an
attacker wrote into the list is acted on. A check of the files' hashes alone (without
Murmur) is ``sha256sum -c SHA256SUMS``; only the signature ties them to the key.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from murmur.bundle.checksums import file_sha256, walk_files
from murmur.bundle.errors import BundleError
from murmur.bundle.manifest import MANIFEST, Manifest
from murmur.bundle.signing import check_signature, fingerprint

SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.sig"

_LINE = re.compile(r"([0-9a-f]{64})  (\S(?:.*\S)?)")


@dataclass(frozen=True)
class Verified:
    manifest: Manifest
    files: int
    key_fingerprint: str


def parse_sums(text: str) -> dict[str, str]:
    """``SHA256SUMS`` as {path: hex digest}.

    Raises:
        BundleError: a malformed line, an unsafe or repeated path.
    """
    listed: dict[str, str] = {}
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # after the final newline
    for number, line in enumerate(lines, start=1):
        match = _LINE.fullmatch(line)
        if match is None:
            raise BundleError(f"{SUMS} line {number} is not '<sha256>  <path>': {line[:80]!r}")
        digest, path = match.groups()
        if not _safe(path) or path in (SUMS, SIGNATURE):
            raise BundleError(f"{SUMS} line {number} names a path outside the bundle: {path!r}")
        if path in listed:
            raise BundleError(f"{SUMS} names {path} twice")
        listed[path] = digest
    if not listed:
        raise BundleError(f"{SUMS} lists no file")
    return listed


def _safe(path: str) -> bool:
    pure = PurePosixPath(path)
    return (
        not pure.is_absolute()
        and ".." not in pure.parts
        and "." not in path.split("/")
        and "" not in path.split("/")
        and "\\" not in path
        and all(ord(character) >= 32 for character in path)
    )


def _read_regular(path: Path, what: str) -> bytes:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        raise BundleError(f"{what} is missing") from None
    if not stat.S_ISREG(mode):
        raise BundleError(f"{what} is not a regular file")
    return path.read_bytes()


def verify_bundle(bundle: Path, key: Ed25519PublicKey) -> Verified:
    """Checks ``bundle`` against ``key``; see the module docstring for the order.

    Raises:
        BundleError: the first thing that does not check out, in one line.
    """
    if not bundle.is_dir():
        raise BundleError(f"{bundle} is not a directory")
    sums = _read_regular(bundle / SUMS, SUMS)
    signature = _read_regular(bundle / SIGNATURE, SIGNATURE)
    try:
        signature_text = signature.decode("ascii")
        sums_text = sums.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(f"{SUMS} or {SIGNATURE} is not text") from None
    check_signature(key, sums, signature_text)
    listed = parse_sums(sums_text)

    present: set[str] = set()
    for relative in walk_files(bundle):
        name = relative.as_posix()
        if name in (SUMS, SIGNATURE):
            continue
        mode = (bundle / relative).lstat().st_mode
        if stat.S_ISLNK(mode):
            raise BundleError(f"{name} is a link: a bundle holds files only")
        if not stat.S_ISREG(mode):
            raise BundleError(f"{name} is not a regular file")
        if name not in listed:
            raise BundleError(f"{name} is not in {SUMS}: an extra file")
        present.add(name)
    missing = sorted(set(listed) - present)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise BundleError(f"{missing[0]}{more} listed in {SUMS} is missing")
    _no_stray_directories(bundle, listed)
    for name, digest in sorted(listed.items()):
        if file_sha256(bundle / name) != digest:
            raise BundleError(f"{name} does not match its SHA-256 in {SUMS}: it was changed")

    if MANIFEST not in listed:
        raise BundleError(f"{MANIFEST} is not in the bundle")
    manifest = Manifest.from_json((bundle / MANIFEST).read_text(encoding="utf-8"))
    for build in manifest.builds:
        if not any(name.startswith(build.path + "/") for name in listed):
            raise BundleError(f"{MANIFEST} names the build {build.path}, which is not there")
    for image in manifest.images:
        if image.file not in listed:
            raise BundleError(f"{MANIFEST} names the image file {image.file}, which is not there")
    for wheel in manifest.wheels:
        if f"wheels/{wheel}" not in listed:
            raise BundleError(f"{MANIFEST} names the wheel {wheel}, which is not there")
    return Verified(manifest, len(listed), fingerprint(key))


def _no_stray_directories(bundle: Path, listed: dict[str, str]) -> None:
    """A directory that holds no listed file is extra too (it could be a place a
    later step looks in)."""
    holders = {str(PurePosixPath(name).parent) for name in listed}
    ancestors = {str(parent) for name in holders for parent in PurePosixPath(name).parents}
    allowed = holders | ancestors
    for path in sorted(bundle.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            name = path.relative_to(bundle).as_posix()
            if name not in allowed:
                raise BundleError(f"{name}/ is not in {SUMS}: an extra directory")
