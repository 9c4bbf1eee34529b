"""A job's live log, bounded in memory, with follow, wrap and timestamps.

The last `capacity` lines are kept as LogLine messages (not rendered text), so
turning wrap or timestamps on re-renders them instead of losing them; older lines
fall off both the buffer and the screen.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime

from rich.text import Text
from textual.widgets import RichLog

from murmur.v1 import types_pb2

DEFAULT_CAPACITY = 5000

_STREAM_STYLES = {
    types_pb2.LOG_STREAM_STDERR: "red",
    types_pb2.LOG_STREAM_SYSTEM: "dim italic",
}


class LogView(RichLog):
    DEFAULT_CSS = """
    LogView { height: 1fr; border: round $secondary; }
    """

    def __init__(self, *, capacity: int = DEFAULT_CAPACITY, id: str | None = None) -> None:
        super().__init__(max_lines=capacity, wrap=False, auto_scroll=True, markup=False, id=id)
        self.kept: deque[types_pb2.LogLine] = deque(maxlen=capacity)
        self.timestamps = False
        self.last_offset = 0
        """Byte offset of the newest line, to resume the stream after a reconnect."""

    @property
    def follow(self) -> bool:
        return self.auto_scroll

    def append(self, line: types_pb2.LogLine) -> None:
        if line.offset and line.offset <= self.last_offset:
            return  # already shown: a resumed stream repeats nothing
        self.last_offset = max(self.last_offset, line.offset)
        self.kept.append(line)
        self.write(self._line_text(line))

    def toggle_follow(self) -> None:
        self.auto_scroll = not self.auto_scroll
        if self.auto_scroll:
            self.scroll_end(animate=False)

    def toggle_wrap(self) -> None:
        self.wrap = not self.wrap
        self._rerender()

    def toggle_timestamps(self) -> None:
        self.timestamps = not self.timestamps
        self._rerender()

    def describe_modes(self) -> str:
        on = [name for name, flag in self._modes() if flag]
        return f"log ({', '.join(on) or 'no follow'}) · {len(self.kept)} lines kept"

    def _modes(self) -> list[tuple[str, bool]]:
        return [("follow", self.follow), ("wrap", self.wrap), ("timestamps", self.timestamps)]

    def _rerender(self) -> None:
        self.clear()
        for line in self.kept:
            self.write(self._line_text(line), scroll_end=False)
        if self.follow:
            self.scroll_end(animate=False)

    def _line_text(self, line: types_pb2.LogLine) -> Text:
        text = Text(no_wrap=not self.wrap)
        if self.timestamps and line.HasField("time"):
            moment = datetime.fromtimestamp(line.time.ToNanoseconds() / 1e9, UTC)
            text.append(moment.strftime("%H:%M:%S.%f")[:-3] + " ", style="dim")
        text.append(line.text.rstrip("\n"), style=_STREAM_STYLES.get(line.stream, ""))
        return text
