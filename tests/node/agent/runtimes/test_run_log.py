"""The run log on disk: what one writer appends, any reader gets back, in order,
from any offset it saw before, across rotation, never half a line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.node.agent.runtimes.run_log import (
    MAX_LINE_CHARS,
    RunLogWriter,
    end_offset,
    read_entries,
)


def test_lines_come_back_in_order_with_stream_and_time(tmp_path: Path) -> None:
    writer = RunLogWriter(tmp_path)
    writer.write("stdout", "epoch 1", at=100.5)
    writer.write("stderr", "warning: ünïcode ✓", at=101.25)
    writer.write("system", "exited with code 0", at=102.0)
    writer.close()

    entries = list(read_entries(tmp_path))

    assert [(e.stream, e.text, e.time) for e in entries] == [
        ("stdout", "epoch 1", 100.5),
        ("stderr", "warning: ünïcode ✓", 101.25),
        ("system", "exited with code 0", 102.0),
    ]
    assert entries[-1].offset == end_offset(tmp_path) == writer.offset


def test_reading_from_an_entry_offset_resumes_after_it(tmp_path: Path) -> None:
    writer = RunLogWriter(tmp_path)
    for number in range(5):
        writer.write("stdout", f"line {number}")
    writer.close()
    first_read = list(read_entries(tmp_path))

    resumed = list(read_entries(tmp_path, from_offset=first_read[1].offset))

    assert [e.text for e in resumed] == ["line 2", "line 3", "line 4"]
    assert list(read_entries(tmp_path, from_offset=end_offset(tmp_path))) == []


def test_rotation_keeps_only_the_newest_segments(tmp_path: Path) -> None:
    writer = RunLogWriter(tmp_path, segment_bytes=200, keep_segments=2)
    for number in range(40):
        writer.write("stdout", f"line {number:02d}")
    writer.close()

    segments = sorted(tmp_path.iterdir())
    texts = [e.text for e in read_entries(tmp_path)]

    assert len(segments) == 2
    assert all(path.stat().st_size <= 200 for path in segments)
    # The oldest output was rotated away; what is left is the newest, unbroken.
    assert texts[-1] == "line 39"
    assert texts == [f"line {n:02d}" for n in range(40 - len(texts), 40)]
    # Segments are named by the offset where they start.
    starts = [int(path.name[4:16]) for path in segments]
    assert starts[1] == starts[0] + segments[0].stat().st_size
    assert end_offset(tmp_path) == starts[1] + segments[1].stat().st_size


def test_an_offset_stays_valid_across_rotation(tmp_path: Path) -> None:
    writer = RunLogWriter(tmp_path, segment_bytes=300, keep_segments=3)
    for number in range(4):
        writer.write("stdout", f"early {number}")
    seen = list(read_entries(tmp_path))
    for number in range(6):
        writer.write("stdout", f"late {number}")
    writer.close()
    assert len(list(tmp_path.iterdir())) > 1, "the test needs a rotation"

    resumed = [e.text for e in read_entries(tmp_path, from_offset=seen[-1].offset)]

    assert resumed == [f"late {n}" for n in range(6)]


def test_an_offset_older_than_the_kept_segments_starts_at_the_oldest_kept(
    tmp_path: Path,
) -> None:
    writer = RunLogWriter(tmp_path, segment_bytes=120, keep_segments=2)
    writer.write("stdout", "first")
    stale = next(iter(read_entries(tmp_path))).offset
    for number in range(30):
        writer.write("stdout", f"more {number:02d}")
    writer.close()

    resumed = [e.text for e in read_entries(tmp_path, from_offset=stale)]

    assert resumed == [e.text for e in read_entries(tmp_path)]
    assert resumed[-1] == "more 29"
    assert "first" not in resumed


def test_a_partial_last_line_is_left_for_the_next_read(tmp_path: Path) -> None:
    writer = RunLogWriter(tmp_path)
    writer.write("stdout", "complete")
    writer.close()
    segment = next(tmp_path.iterdir())
    record = json.dumps({"t": 1.0, "s": "stdout", "l": "being written"}).encode()
    with segment.open("ab") as handle:
        handle.write(record[:10])

    assert [e.text for e in read_entries(tmp_path)] == ["complete"]
    offset = next(iter(read_entries(tmp_path))).offset

    with segment.open("ab") as handle:
        handle.write(record[10:] + b"\n")

    assert [e.text for e in read_entries(tmp_path, from_offset=offset)] == ["being written"]


def test_a_writer_reopened_after_a_torn_line_loses_only_that_line(tmp_path: Path) -> None:
    writer = RunLogWriter(tmp_path)
    writer.write("stdout", "before the crash")
    writer.close()
    segment = next(tmp_path.iterdir())
    with segment.open("ab") as handle:
        handle.write(b'{"t": 1.0, "s": "stdout", "l": "torn')  # the writer died here

    reopened = RunLogWriter(tmp_path)
    reopened.write("system", "after the restart")
    reopened.close()

    assert [e.text for e in read_entries(tmp_path)] == ["before the crash", "after the restart"]
    assert reopened.offset == end_offset(tmp_path)


def test_a_long_line_is_split_into_capped_records(tmp_path: Path) -> None:
    writer = RunLogWriter(tmp_path)
    text = "x" * (2 * MAX_LINE_CHARS + 5)
    writer.write("stdout", text)
    writer.write("stdout", "")
    writer.close()

    entries = list(read_entries(tmp_path))

    assert [len(e.text) for e in entries] == [MAX_LINE_CHARS, MAX_LINE_CHARS, 5, 0]
    assert "".join(e.text for e in entries) == text


@settings(max_examples=40, deadline=None)
@given(
    lines=st.lists(
        st.tuples(st.sampled_from(["stdout", "stderr", "system"]), st.text(max_size=80)),
        max_size=40,
    ),
    segment_bytes=st.integers(min_value=60, max_value=600),
    resume_at=st.integers(min_value=0, max_value=40),
)
def test_every_line_comes_back_once_from_any_seen_offset(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[tuple[str, str]],
    segment_bytes: int,
    resume_at: int,
) -> None:
    directory = tmp_path_factory.mktemp("log")
    writer = RunLogWriter(directory, segment_bytes=segment_bytes, keep_segments=10_000)
    for stream, text in lines:
        writer.write(stream, text)  # type: ignore[arg-type]
    writer.close()

    entries = list(read_entries(directory))

    assert [(e.stream, e.text) for e in entries] == lines
    offsets = [e.offset for e in entries]
    assert offsets == sorted(set(offsets))
    start = offsets[resume_at - 1] if 0 < resume_at <= len(offsets) else 0
    skipped = resume_at if 0 < resume_at <= len(offsets) else 0
    assert [(e.stream, e.text) for e in read_entries(directory, from_offset=start)] == (
        lines[skipped:]
    )
