"""A stand-in for the onedir tree of ``make dist``, for tests that must not run
PyInstaller (about 30 s): its ``murmur`` is a script that runs this checkout's
``python -m murmur``, so install.sh's steps (verify, --version, node install) run the
real code, as the frozen build would."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def make_fake_onedir(path: Path, *, version: str = "0.1.0", architecture: str = "x86_64") -> Path:
    """Lays out ``path``/murmur, ``_internal/`` and ``murmur-build.json``; returns ``path``."""
    (path / "_internal").mkdir(parents=True)
    launcher = path / "murmur"
    launcher.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH={shlex.quote(str(REPOSITORY))} "
        f'exec {shlex.quote(sys.executable)} -m murmur "$@"\n'
    )
    launcher.chmod(0o755)
    (path / "_internal" / "libfake.so").write_bytes(bytes(range(256)) * 4)
    info = {
        "version": version,
        "architecture": architecture,
        "glibc_floor": "2.35",
        "glibc_floor_needed_by": ["_internal/libpython3.11.so.1.0"],
        "commit": "0" * 40,
        "source_date_epoch": 0,
        "python": "3.11",
    }
    (path / "murmur-build.json").write_text(json.dumps(info))
    return path
