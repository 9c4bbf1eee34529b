"""``murmur bundle create``: lay out, hash and sign an offline bundle (see the package
docstring for its layout).

Run on a connected machine of the lab (the one that ran ``make dist``): the only
things here that may reach a network are ``pip wheel`` (the wheelhouse, from the
package index or pip's cache) and nothing else; images come from the local Docker
engine (``docker save``), never a registry. The bundle is written beside ``--out``
under a temporary name and renamed into place once signed, so a failed run leaves no
half bundle that could be mistaken for a whole one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from murmur.bundle.checksums import sums_text, walk_files
from murmur.bundle.errors import BundleError
from murmur.bundle.manifest import MANIFEST, Build, Image, Manifest
from murmur.bundle.signing import sign
from murmur.bundle.verify import SIGNATURE, SUMS

BUILD_INFO = "murmur-build.json"
"""What ``make dist`` (scripts/packaging/build.py) writes into the onedir tree."""

INSTALL_SCRIPT = "install.sh"


@dataclass(frozen=True)
class WheelSource:
    """Where the wheelhouse comes from: a directory of wheels made beforehand, or a
    ``pip wheel`` run of ``requirement`` with ``python``; neither: no wheelhouse."""

    directory: Path | None = None
    python: str | None = None
    requirement: str | None = None


def read_build(onedir: Path) -> Build:
    """The facts ``make dist`` recorded in an onedir tree.

    Raises:
        BundleError: the tree is not a ``make dist`` onedir build.
    """
    info_path = onedir / BUILD_INFO
    if not (onedir / "murmur").is_file():
        raise BundleError(f"{onedir} holds no murmur executable: pass the onedir tree of make dist")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        architecture = str(info["architecture"])
        return Build(
            architecture=architecture,
            path=f"linux-{architecture}/murmur",
            version=str(info["version"]),
            glibc_floor=None if info["glibc_floor"] is None else str(info["glibc_floor"]),
            commit=str(info.get("commit", "")),
        )
    except OSError as exc:
        raise BundleError(
            f"cannot read {info_path}: {exc.strerror or exc} (make dist writes it)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{info_path} is malformed: {exc}") from None


def image_file_name(reference: str) -> str:
    """``lab/pytorch:2.4`` -> ``images/lab_pytorch_2.4.tar``."""
    return "images/" + re.sub(r"[^A-Za-z0-9._-]", "_", reference) + ".tar"


def _run(command: Sequence[str], what: str, *, timeout: float) -> str:
    try:
        result = subprocess.run(
            list(command), capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise BundleError(f"{what}: {command[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise BundleError(f"{what}: no answer within {timeout:g} s") from None
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise BundleError(f"{what} failed: {lines[-1] if lines else f'exit {result.returncode}'}")
    return result.stdout


def save_image(reference: str, bundle: Path, *, docker: str = "docker") -> Image:
    """``docker save`` of a local image into the bundle; its ID is the digest.

    Raises:
        BundleError: no such image in the local engine, or docker failed.
    """
    digest = _run(
        [docker, "image", "inspect", "--format", "{{.Id}}", reference],
        f"docker image inspect {reference}",
        timeout=60,
    ).strip()
    if not digest.startswith("sha256:"):
        raise BundleError(f"docker image inspect {reference} gave no image ID: {digest!r}")
    relative = image_file_name(reference)
    target = bundle / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    _run([docker, "save", "-o", str(target), reference], f"docker save {reference}", timeout=3600)
    return Image(name=reference, file=relative, digest=digest, size=target.stat().st_size)


def collect_wheels(source: WheelSource, bundle: Path) -> tuple[str, ...]:
    """Fills ``wheels/``; returns the file names.

    Raises:
        BundleError: the directory holds no wheel, or pip failed.
    """
    target = bundle / "wheels"
    target.mkdir()
    if source.directory is not None:
        wheels = sorted(source.directory.glob("*.whl"))
        if not wheels:
            raise BundleError(f"{source.directory} holds no .whl file")
        for wheel in wheels:
            shutil.copyfile(wheel, target / wheel.name)
    elif source.python is not None and source.requirement is not None:
        _run(
            [
                source.python, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                "--wheel-dir", str(target), source.requirement,
            ],
            f"pip wheel {source.requirement}",
            timeout=1800,
        )  # fmt: skip
    else:
        target.rmdir()
        return ()
    return tuple(sorted(path.name for path in target.glob("*.whl")))


def _created_at() -> str:
    """Now, or ``SOURCE_DATE_EPOCH`` when set (a rebuilt bundle then says the same)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = datetime.fromtimestamp(int(epoch) if epoch else time.time(), tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def create_bundle(
    out: Path,
    *,
    key: Ed25519PrivateKey,
    onedirs: Sequence[Path],
    wheels: WheelSource,
    images: Sequence[str] = (),
    docker: str = "docker",
    progress: Callable[[str], None] = lambda line: None,
) -> Manifest:
    """Makes the bundle at ``out`` (which must not exist yet) and signs it.

    Raises:
        BundleError: anything that keeps the bundle from being whole; nothing is left
            at ``out`` then.
    """
    if out.exists() or out.is_symlink():
        raise BundleError(f"{out} exists: a bundle is written to a new directory")
    if not onedirs:
        raise BundleError("no onedir build to bundle: run make dist, or pass --onedir")
    builds = [read_build(onedir) for onedir in onedirs]
    architectures = [build.architecture for build in builds]
    if len(set(architectures)) != len(architectures):
        raise BundleError(f"two builds for one architecture: {', '.join(architectures)}")
    versions = {build.version for build in builds}
    if len(versions) != 1:
        raise BundleError(f"the builds are of different versions: {', '.join(sorted(versions))}")
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        manifest = _fill(partial, builds, onedirs, wheels, images, docker, progress, key)
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _fill(
    bundle: Path,
    builds: Sequence[Build],
    onedirs: Sequence[Path],
    wheels: WheelSource,
    images: Sequence[str],
    docker: str,
    progress: Callable[[str], None],
    key: Ed25519PrivateKey,
) -> Manifest:
    for build, onedir in zip(builds, onedirs, strict=True):
        progress(f"copying the {build.architecture} build from {onedir}")
        try:
            # Links are copied as the files they point to: a bundle holds files only.
            shutil.copytree(onedir, bundle / build.path, symlinks=False)
        except (OSError, shutil.Error) as exc:
            raise BundleError(f"cannot copy {onedir}: {exc}") from None
    script = resources.files("murmur.bundle").joinpath(INSTALL_SCRIPT).read_bytes()
    (bundle / INSTALL_SCRIPT).write_bytes(script)
    (bundle / INSTALL_SCRIPT).chmod(0o755)
    if wheels.directory is not None or wheels.requirement is not None:
        progress("collecting the wheelhouse (the client library and its dependencies)")
    wheel_names = collect_wheels(wheels, bundle)
    saved = []
    for reference in images:
        progress(f"saving image {reference}")
        saved.append(save_image(reference, bundle, docker=docker))
    manifest = Manifest(
        version=builds[0].version,
        created_at=_created_at(),
        builds=tuple(builds),
        wheels=wheel_names,
        images=tuple(saved),
    )
    (bundle / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    progress("hashing and signing")
    listing = sums_text(bundle, list(walk_files(bundle)))
    (bundle / SUMS).write_text(listing, encoding="utf-8")
    (bundle / SIGNATURE).write_text(sign(key, listing.encode("utf-8")), encoding="ascii")
    return manifest
