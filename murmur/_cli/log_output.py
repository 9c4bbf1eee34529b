"""How a log line is printed: to stdout or stderr as the run wrote it, with its time
when asked, behind a prefix when several runs' lines mix (``service logs``)."""

from __future__ import annotations

import sys
from datetime import UTC
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from murmur.v1 import types_pb2


def print_log_line(
    line: types_pb2.LogLine, *, timestamps: bool, flush: bool, prefix: str = ""
) -> None:
    """Prints ``line`` where its run wrote it (stderr lines to stderr)."""
    from murmur.v1 import types_pb2

    text = line.text
    if timestamps:
        moment = line.time.ToDatetime(tzinfo=UTC).isoformat(timespec="milliseconds")
        text = f"{moment} {text}"
    target = sys.stderr if line.stream == types_pb2.LOG_STREAM_STDERR else sys.stdout
    print(prefix + text, file=target, flush=flush)
