"""A table that paints only the rows on screen, for 10,000 jobs without a stall.

The rows live in a `TableModel`; this widget keeps a cursor (by key, so a row that
moves under a re-sort stays selected), paints the header and the visible window
through Textual's line API, and sorts when a header is clicked or `s`/`S` pressed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from murmur.tui.table_model import TableModel

T = TypeVar("T")

_HEADER_STYLE = Style(bold=True, reverse=True)
_CURSOR_STYLE = Style(reverse=True)
_GAP = 1


class VirtualTable(ScrollView, Generic[T], can_focus=True):
    DEFAULT_CSS = """
    VirtualTable { height: 1fr; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "Top", show=False),
        Binding("end,G", "jump(-1)", "Bottom", show=False),
        Binding("enter", "select", "Open"),
        Binding("s", "sort_next", "Sort"),
        Binding("S", "sort_reverse", "Reverse", show=False),
    ]

    class Selected(Message):
        """Enter on a row: the screen opens the detail view of `key`."""

        def __init__(self, table: VirtualTable[Any], key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

    class CursorMoved(Message):
        """The cursor is on another row: a screen can show what that row holds."""

        def __init__(self, table: VirtualTable[Any], key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

    def __init__(
        self,
        model: TableModel[T],
        *,
        clock: Callable[[], float] = time.time,
        id: str | None = None,
    ) -> None:
        """
        Args:
            clock: Seconds since the epoch, for cells such as ages; fixed in snapshots.
        """
        super().__init__(id=id)
        self.model = model
        self.clock = clock
        self.cursor_key: str | None = None
        self.painted_revision = -1
        """The model revision of the last painted frame (read by the benchmark)."""
        self.painted_at = 0.0

    # ------------------------------------------------------------------ state

    @property
    def cursor_row(self) -> int:
        rows = self.model.visible()
        if self.cursor_key is None or not rows:
            return 0
        try:
            return rows.index(self.cursor_key)
        except ValueError:
            return 0

    def rows_changed(self) -> None:
        """Call after changing the model: resizes the scroll area and repaints."""
        rows = self.model.visible()
        if rows and (self.cursor_key is None or self.cursor_key not in self.model_keys()):
            self._place_cursor(rows[0])
        width = sum(column.width + _GAP for column in self.model.columns)
        self.virtual_size = Size(width, len(rows) + 1)
        self.refresh()

    def model_keys(self) -> set[str]:
        return set(self.model.visible())

    def move_cursor_to(self, row: int) -> None:
        rows = self.model.visible()
        if not rows:
            return
        row = max(0, min(row, len(rows) - 1))
        self._place_cursor(rows[row])
        body = max(1, self.size.height - 1)
        top = round(self.scroll_offset.y)
        if row < top:
            self.scroll_to(y=row, animate=False)
        elif row >= top + body:
            self.scroll_to(y=row - body + 1, animate=False)
        self.refresh()

    def _place_cursor(self, key: str) -> None:
        if key != self.cursor_key:
            self.cursor_key = key
            self.post_message(self.CursorMoved(self, key))

    # ---------------------------------------------------------------- actions

    def action_cursor(self, delta: int) -> None:
        self.move_cursor_to(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor_to(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_jump(self, row: int) -> None:
        self.move_cursor_to(row if row >= 0 else len(self.model.visible()) - 1)

    def action_select(self) -> None:
        if self.cursor_key is not None and self.model.visible():
            self.post_message(self.Selected(self, self.cursor_key))

    def action_sort_next(self) -> None:
        self.model.sort_by(self.model.sort_column + 1, reverse=False)
        self.rows_changed()

    def action_sort_reverse(self) -> None:
        self.model.sort_by(self.model.sort_column)
        self.rows_changed()

    def on_click(self, event: Click) -> None:
        if event.y == 0:
            column = self._column_at(event.x + round(self.scroll_offset.x))
            if column is not None:
                self.model.sort_by(column)
                self.rows_changed()
            return
        self.move_cursor_to(round(self.scroll_offset.y) + event.y - 1)
        if event.chain == 2:
            self.action_select()

    def _column_at(self, x: int) -> int | None:
        left = 0
        for index, column in enumerate(self.model.columns):
            left += column.width + _GAP
            if x < left:
                return index
        return None

    # ------------------------------------------------------------------ paint

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x = round(self.scroll_offset.x)
        if y == 0:
            strip = self._header()
        else:
            rows = self.model.visible()
            index = round(self.scroll_offset.y) + y - 1
            if index >= len(rows):
                return Strip.blank(width, self.rich_style)
            key = rows[index]
            item = self.model.get(key)
            assert item is not None
            strip = self._row(item, self.clock())
            if key == self.cursor_key:
                style = _CURSOR_STYLE if self.has_focus else Style(bgcolor="grey23")
                strip = strip.apply_style(style)
        self.painted_revision = self.model.revision
        self.painted_at = time.perf_counter()
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def column_widths(self) -> list[int]:
        """The columns' widths; the last one takes whatever room the window has left."""
        widths = [column.width for column in self.model.columns]
        spare = self.size.width - sum(width + _GAP for width in widths)
        if widths and spare > 0:
            widths[-1] += spare
        return widths

    def _header(self) -> Strip:
        segments = []
        for index, (column, width) in enumerate(
            zip(self.model.columns, self.column_widths(), strict=True)
        ):
            title = column.title
            if index == self.model.sort_column:
                title += " ▼" if self.model.sort_reverse else " ▲"
            segments.append(Segment(_fit(title, width) + " " * _GAP, _HEADER_STYLE))
        return Strip(segments)

    def _row(self, item: T, now: float) -> Strip:
        segments: list[Segment] = []
        console = self.app.console
        for column, width in zip(self.model.columns, self.column_widths(), strict=True):
            value = column.cell(item, now)
            if isinstance(value, Text):
                text = value.copy()
                text.truncate(width, overflow="ellipsis", pad=True)
                segments.extend(text.render(console))
            else:
                segments.append(Segment(_fit(value, width)))
            segments.append(Segment(" " * _GAP))
        return Strip(segments)


def _fit(text: str, width: int) -> str:
    """Pads or cuts `text` to exactly `width` cells, marking a cut with an ellipsis."""
    if len(text) <= width:
        return text.ljust(width)
    return text[: max(0, width - 1)] + "…"
