"""The stop notice's files: absent until a stop, then whole, readable by any
account by its path, the first stop's kept, gone with the run."""

from __future__ import annotations

import stat
from pathlib import Path

from murmur.node.agent.runtimes.stop_notice import NOTICE_FILE, StopNotices


def test_a_notice_appears_whole_at_the_first_stop_and_goes_with_the_run(tmp_path: Path) -> None:
    notices = StopNotices(tmp_path / "notices")
    directory = notices.prepare("run1")
    assert not (directory / NOTICE_FILE).exists()  # the run may go on
    assert stat.S_IMODE((tmp_path / "notices").stat().st_mode) == 0o711
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    notices.post("run1", 1_800_000_000.5, "preempted by job j2:\nits room\n")
    notices.post("run1", 1_900_000_000.0, "cancelled")  # the first stop's stands
    notice = directory / NOTICE_FILE
    assert notice.read_text() == "1800000000.500\npreempted by job j2: its room\n"
    assert stat.S_IMODE(notice.stat().st_mode) == 0o644
    assert [path.name for path in directory.iterdir()] == [NOTICE_FILE]  # no partial left
    notices.remove("run1")
    assert not directory.exists()


def test_a_run_without_a_notice_directory_gets_none(tmp_path: Path) -> None:
    """An adopted run started by a version without notices: nothing is written."""
    notices = StopNotices(tmp_path / "notices")
    notices.post("old", 1.0, "stopped")
    assert not (tmp_path / "notices").exists()
