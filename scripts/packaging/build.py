"""``make dist``: build the one Murmur program with PyInstaller, reproducibly.

Leaves the onedir tree at ``dist/onedir/murmur/`` (run ``dist/onedir/murmur/murmur``:
the canonical artifact, nothing to unpack at start) and the onefile executable at
``dist/onefile/murmur``, prints the highest glibc symbol version the tree needs (the
oldest host it runs on) and writes ``murmur-build.json`` into the onedir tree, which
``murmur bundle create`` reads (version, architecture, glibc floor, commit).

Reproducible: ``PYTHONHASHSEED=0``, ``SOURCE_DATE_EPOCH`` from the commit, and the
same work and output paths every time, so the same commit built in the same checkout
gives byte-identical trees; ``--twice`` builds again and compares (``make
dist-repro``). PyInstaller cannot build for another architecture: build on each.

Usage: python scripts/packaging/build.py [--twice]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPOSITORY))

from murmur.bundle.checksums import tree_digest  # noqa: E402
from murmur.bundle.glibc import glibc_floor  # noqa: E402

SPEC = REPOSITORY / "scripts" / "packaging" / "murmur.spec"
WORK = REPOSITORY / "build" / "pyinstaller"
OUT = REPOSITORY / "build" / "pyinstaller-dist"
DIST = REPOSITORY / "dist"
ONEDIR = DIST / "onedir" / "murmur"
ONEFILE = DIST / "onefile" / "murmur"
BUILD_INFO = "murmur-build.json"


def _git(*args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=REPOSITORY, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def source_date_epoch() -> str:
    """The commit's time: what every timestamp a tool writes is clamped to."""
    return os.environ.get("SOURCE_DATE_EPOCH") or _git("log", "-1", "--format=%ct") or "0"


def build_once() -> float:
    """One PyInstaller run; the outputs moved to dist/. Returns its wall time."""
    for path in (WORK, OUT, ONEDIR.parent, ONEFILE.parent):
        shutil.rmtree(path, ignore_errors=True)
    env = dict(os.environ, PYTHONHASHSEED="0", SOURCE_DATE_EPOCH=source_date_epoch())
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean",
            "--log-level", "WARN", "--workpath", str(WORK), "--distpath", str(OUT), str(SPEC),
        ],
        cwd=REPOSITORY, env=env, check=True,
    )  # fmt: skip
    ONEDIR.parent.mkdir(parents=True)
    ONEFILE.parent.mkdir(parents=True)
    (OUT / "murmur").rename(ONEDIR)
    (OUT / "murmur-onefile").rename(ONEFILE)
    return time.monotonic() - started


def version_of(binary: Path) -> str:
    """What the build says it is (``murmur 0.1.0`` -> ``0.1.0``)."""
    shown = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    return shown[-1]


def write_build_info() -> dict[str, object]:
    """murmur-build.json in the onedir tree: what a bundle's manifest says of it.
    Nothing in it changes between two builds of one commit (no build time)."""
    floor = glibc_floor(ONEDIR)
    info: dict[str, object] = {
        "version": version_of(ONEDIR / "murmur"),
        "architecture": platform.machine(),
        "glibc_floor": floor.number,
        "glibc_floor_needed_by": list(floor.needed_by),
        "commit": _git("rev-parse", "HEAD"),
        # Built from uncommitted changes: the commit alone does not say what is inside.
        "tree_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "source_date_epoch": int(source_date_epoch()),
        "python": platform.python_version(),
    }
    (ONEDIR / BUILD_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def size_mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--twice", action="store_true", help="build again and check both are byte-identical"
    )
    args = parser.parse_args()
    seconds = build_once()
    info = write_build_info()
    digests = (tree_digest(ONEDIR), tree_digest(ONEFILE))
    print(f"built murmur {info['version']} for {info['architecture']} in {seconds:.0f} s")
    print(f"  onedir  {ONEDIR.relative_to(REPOSITORY)}/murmur  {size_mib(ONEDIR):.0f} MiB  "
          f"sha256 {digests[0][:16]}")  # fmt: skip
    print(f"  onefile {ONEFILE.relative_to(REPOSITORY)}  {size_mib(ONEFILE):.0f} MiB  "
          f"sha256 {digests[1][:16]}")  # fmt: skip
    needed_by = ", ".join(info["glibc_floor_needed_by"][:3])  # type: ignore[index]
    print(f"  glibc floor: {info['glibc_floor']} (needed by {needed_by}): "
          "hosts with an older glibc cannot run it")  # fmt: skip
    if not args.twice:
        return 0
    kept = WORK.parent / "dist-first"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(DIST, kept, symlinks=True)
    build_once()
    write_build_info()
    again = (tree_digest(ONEDIR), tree_digest(ONEFILE))
    if again == digests:
        shutil.rmtree(kept)
        print("reproducible: a second build is byte-identical (onedir and onefile)")
        return 0
    print(f"NOT reproducible: the first build is kept in {kept}; compare with "
          f"`diff -r {kept}/onedir {DIST}/onedir`", file=sys.stderr)  # fmt: skip
    return 1


if __name__ == "__main__":
    sys.exit(main())
