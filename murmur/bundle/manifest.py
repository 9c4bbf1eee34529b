"""``manifest.json``: what a bundle holds, for people and for ``install.sh``.

Written by :mod:`murmur.bundle.create`, covered by ``SHA256SUMS`` like every other
file, and read back strictly: an unknown format, a missing field or a file it names
that the bundle lacks is an error, not a guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from murmur.bundle.errors import BundleError
from murmur.bundle.glibc import version_key

FORMAT = 1
"""Bumped when a reader of an older format would misread a newer manifest."""

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Build:
    """One architecture's onedir build in the bundle."""

    architecture: str
    """As ``uname -m`` names it: ``x86_64``, ``aarch64``."""
    path: str
    """The tree, relative to the bundle: ``linux-x86_64/murmur``."""
    version: str
    glibc_floor: str | None
    """The oldest glibc it runs on (``2.35``); None when it needs no versioned symbol."""
    commit: str
    """The commit it was built from, as the build recorded it ('' when unknown)."""


@dataclass(frozen=True)
class Image:
    """A job image saved with ``docker save``, loaded by ``install.sh``."""

    name: str
    """The reference it was saved under (``lab/pytorch:2.4``); ``docker load`` restores it."""
    file: str
    """The tarball, relative to the bundle: ``images/lab_pytorch_2.4.tar``."""
    digest: str
    """The image ID (``sha256:...``, the digest of its config): what ``docker
    image inspect`` shows once loaded."""
    size: int


@dataclass(frozen=True)
class Manifest:
    version: str
    created_at: str
    """UTC, ISO 8601: when the bundle was made."""
    builds: tuple[Build, ...]
    wheels: tuple[str, ...]
    """File names under ``wheels/``."""
    images: tuple[Image, ...] = ()
    format: int = FORMAT

    @property
    def architectures(self) -> tuple[str, ...]:
        return tuple(build.architecture for build in self.builds)

    @property
    def glibc_floor(self) -> str | None:
        """The highest floor of its builds: a host older than that runs none of them."""
        floors = [build.glibc_floor for build in self.builds if build.glibc_floor]
        return max(floors, key=lambda floor: version_key(f"GLIBC_{floor}"), default=None)

    def to_json(self) -> str:
        data = {
            "format": self.format,
            "version": self.version,
            "created_at": self.created_at,
            "architectures": list(self.architectures),
            "glibc_floor": self.glibc_floor,
            "builds": [vars(build) for build in self.builds],
            "wheels": list(self.wheels),
            "images": [vars(image) for image in self.images],
        }
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Raises: BundleError: not a manifest this version of Murmur can read."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BundleError(f"{MANIFEST} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BundleError(f"{MANIFEST} is not a JSON object")
        if data.get("format") != FORMAT:
            raise BundleError(
                f"{MANIFEST} has format {data.get('format')!r}; this murmur reads format "
                f"{FORMAT}: verify with the murmur of the bundle's version"
            )
        try:
            manifest = cls(
                version=_text(data, "version"),
                created_at=_text(data, "created_at"),
                builds=tuple(
                    Build(
                        architecture=_text(build, "architecture"),
                        path=_text(build, "path"),
                        version=_text(build, "version"),
                        glibc_floor=_optional_text(build, "glibc_floor"),
                        commit=_text(build, "commit"),
                    )
                    for build in _list(data, "builds")
                ),
                wheels=tuple(_as_text(name, "wheels") for name in _list(data, "wheels")),
                images=tuple(
                    Image(
                        name=_text(image, "name"),
                        file=_text(image, "file"),
                        digest=_text(image, "digest"),
                        size=_integer(image, "size"),
                    )
                    for image in _list(data, "images")
                ),
            )
        except (TypeError, AttributeError) as exc:
            raise BundleError(f"{MANIFEST} is malformed: {exc}") from None
        if not manifest.builds:
            raise BundleError(f"{MANIFEST} names no build")
        return manifest


def _field(data: Any, key: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise BundleError(f"{MANIFEST} lacks {key!r}")
    return data[key]


def _as_text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise BundleError(f"{MANIFEST}: {key!r} must be a string, got {value!r}")
    return value


def _text(data: Any, key: str) -> str:
    return _as_text(_field(data, key), key)


def _optional_text(data: Any, key: str) -> str | None:
    value = _field(data, key)
    return None if value is None else _as_text(value, key)


def _integer(data: Any, key: str) -> int:
    value = _field(data, key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BundleError(f"{MANIFEST}: {key!r} must be an integer, got {value!r}")
    return value


def _list(data: Any, key: str) -> list[Any]:
    value = _field(data, key)
    if not isinstance(value, list):
        raise BundleError(f"{MANIFEST}: {key!r} must be a list")
    return value
