"""A node's data dir: traversable, so that jobs' accounts reach their scratch dirs and
datasets by path, but everything else in it private to the daemon, files left by
older versions included."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.support.nodes import Lab


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_dir_lets_jobs_through_and_keeps_the_rest_private(lab: Lab) -> None:
    data_dir = lab.first_data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    leftover = data_dir / "murmur.db"
    leftover.write_bytes(b"")  # as an older version's umask 022 left it
    leftover.chmod(0o644)

    node = lab.start_node("node-1", data_dir=data_dir)
    node.terminate()

    assert mode(data_dir) == 0o711
    assert mode(data_dir / "runs") == 0o700
    assert mode(data_dir / "datasets") == 0o711
    assert mode(data_dir / "ca") == 0o700
    for entry in data_dir.iterdir():
        if entry.name not in {"work", "datasets"}:
            assert mode(entry) & 0o077 == 0, f"{entry.name} is {oct(mode(entry))}"
    assert mode(data_dir / "murmur.db") == 0o600
