"""Atomic, permission-safe writes of keys, certificates and identity bundles.

A private key must never be readable by others, not even for the instant between
creating a file and chmod-ing it, and a crash must never leave half a key behind. So
every write goes to a temporary file in the target's directory, created with its final
mode by `os.open`, flushed to disk, renamed over the target, and the directory entry
flushed too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from murmur.certs.errors import CertificateFileError

__all__ = ["create_private_directory", "write_private_file", "write_public_file"]

PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644
PRIVATE_DIRECTORY_MODE = 0o700


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically write `data` to `path`, readable and writable by the owner only (0600).

    Raises:
        CertificateFileError: the file cannot be written.
    """
    _write_atomically(path, data, PRIVATE_FILE_MODE)


def write_public_file(path: Path, data: bytes) -> None:
    """Atomically write `data` to `path`, readable by everyone (0644).

    Raises:
        CertificateFileError: the file cannot be written.
    """
    _write_atomically(path, data, PUBLIC_FILE_MODE)


def create_private_directory(path: Path) -> None:
    """Create `path` (and missing parents) with mode 0700 for the last component.

    An existing directory is left as it is: its owner chose its mode.

    Raises:
        CertificateFileError: the directory cannot be created.
    """
    if path.is_dir():
        return
    try:
        path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
        # mkdir's mode is filtered by the umask; set it exactly.
        path.chmod(PRIVATE_DIRECTORY_MODE)
    except OSError as error:
        raise CertificateFileError(
            f"cannot create directory {path}: {error.strerror or error}"
        ) from error


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as error:
        raise CertificateFileError(f"cannot write {path}: {error.strerror or error}") from error
    try:
        try:
            # The umask may have removed bits we want (0644 under umask 027).
            os.fchmod(descriptor, mode)
            _write_all(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise CertificateFileError(f"cannot write {path}: {error.strerror or error}") from error
    _fsync_directory(path.parent)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def _fsync_directory(directory: Path) -> None:
    # Makes the rename durable. Some filesystems refuse to open or fsync a directory;
    # the file itself is already complete and in place, so that is not an error.
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
