"""Atomic, permission-exact writes of key and certificate files."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from murmur.certs import (
    CertificateFileError,
    create_private_directory,
    write_private_file,
    write_public_file,
)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A umask that would make new files group- and world-writable if we trusted it."""
    previous = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("loose_umask")
def test_private_file_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    write_private_file(path, b"key material")
    assert path.read_bytes() == b"key material"
    assert mode_of(path) == 0o600


def test_public_file_is_world_readable_even_under_a_strict_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        write_public_file(tmp_path / "ca.crt", b"certificate")
    finally:
        os.umask(previous)
    assert mode_of(tmp_path / "ca.crt") == 0o644


def test_overwrite_replaces_content_and_tightens_mode(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    path.write_bytes(b"old and world readable")
    path.chmod(0o644)
    write_private_file(path, b"new")
    assert path.read_bytes() == b"new"
    assert mode_of(path) == 0o600


def test_no_temporary_files_are_left_behind(tmp_path: Path) -> None:
    write_private_file(tmp_path / "a.key", b"a")
    write_public_file(tmp_path / "a.crt", b"b")
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["a.crt", "a.key"]


def test_write_into_missing_directory_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "ca.key"
    with pytest.raises(CertificateFileError, match=r"cannot write .*missing/ca\.key"):
        write_private_file(path, b"x")


def test_failed_replace_cleans_up_the_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "child").write_bytes(b"makes the directory non-empty")
    with pytest.raises(CertificateFileError, match="occupied"):
        write_private_file(target, b"x")
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["occupied"]


@pytest.mark.usefixtures("loose_umask")
def test_private_directory_is_created_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    create_private_directory(directory)
    assert directory.is_dir()
    assert mode_of(directory) == 0o700


def test_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o755)
    create_private_directory(directory)
    assert mode_of(directory) == 0o755


def test_directory_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(CertificateFileError, match="cannot create directory"):
        create_private_directory(tmp_path / "file" / "sub")
