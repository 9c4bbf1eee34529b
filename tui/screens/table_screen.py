"""A view whose body is one virtualized table fed incrementally from the state."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from textual.app import ComposeResult
from textual.widgets import Static

from murmur.tui.filters import FilterSpec
from murmur.tui.screens.base import ViewScreen
from murmur.tui.table_model import Column, TableModel
from murmur.tui.widgets.virtual_table import VirtualTable

T = TypeVar("T")


class TableScreen(ViewScreen, Generic[T]):
    FILTERABLE: ClassVar[bool] = True

    def __init__(
        self, columns: list[Column[T]], filter_spec: FilterSpec[T], *, sort_column: int = 0
    ) -> None:
        super().__init__()
        self.model: TableModel[T] = TableModel(columns, sort_column=sort_column)
        self._filter_spec = filter_spec
        self._status = Static(id="table-status")

    def compose_body(self) -> ComposeResult:
        yield VirtualTable(self.model, clock=self.top.clock, id="table")
        yield self._status

    @property
    def table(self) -> VirtualTable[T]:
        return self.query_one("#table", VirtualTable)

    def focus_body(self) -> None:
        self.table.focus()

    def on_mount(self) -> None:
        self.table.focus()

    def apply_filter(self, text: str) -> None:
        self.model.set_filter(self._filter_spec.predicate(text))
        super().apply_filter(text)

    def update_body(self, *, changed: bool) -> None:
        if changed:
            self.sync_model()
        self.table.rows_changed()
        shown, total = len(self.model.visible()), len(self.model)
        filtered = f" · filter /{self.filter_text}" if self.filter_text else ""
        self._status.update(f" {shown} of {total} shown{filtered}")

    def sync_model(self) -> None:
        """Copies what changed in the state since the last refresh into the model."""
        raise NotImplementedError

    def selected(self) -> T | None:
        key = self.table.cursor_key
        return self.model.get(key) if key is not None else None
