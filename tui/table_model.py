"""The data behind a virtualized table: items by key, columns, one filter, one sort.

A table of 10,000 jobs cannot afford to format 10,000 rows on every update, so the
model keeps the raw items; the widget formats only the rows on screen, at paint
time (ages stay current without touching the model). Sorting and filtering run
only when the items, the filter or the sort changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rich.text import Text

T = TypeVar("T")

SortKey = Any
"""Whatever orders a column's values; comparable within one column."""


@dataclass(frozen=True)
class Column(Generic[T]):
    """One column: its title, width, how to sort by it and how to show a cell.

    `cell` gets the item and the current time (seconds since the epoch), so columns
    such as AGE are computed when painted rather than stored.
    """

    title: str
    width: int
    sort_key: Callable[[T], SortKey]
    cell: Callable[[T, float], str | Text]


class TableModel(Generic[T]):
    """Items by key, the visible order after the filter and the sort, and a revision.

    `revision` grows with every change that could alter what is shown, so a widget
    can tell whether what it painted is current.
    """

    def __init__(self, columns: list[Column[T]], *, sort_column: int = 0) -> None:
        self.columns = columns
        self.sort_column = sort_column
        self.sort_reverse = False
        self.revision = 0
        self._items: dict[str, T] = {}
        self._predicate: Callable[[T], bool] | None = None
        self._order: list[str] | None = []

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> T | None:
        return self._items.get(key)

    def upsert(self, key: str, item: T) -> None:
        self._items[key] = item
        self._changed()

    def upsert_many(self, items: Iterable[tuple[str, T]]) -> None:
        self._items.update(items)
        self._changed()

    def replace_all(self, items: Iterable[tuple[str, T]]) -> None:
        self._items = dict(items)
        self._changed()

    def remove(self, key: str) -> None:
        if self._items.pop(key, None) is not None:
            self._changed()

    def set_filter(self, predicate: Callable[[T], bool] | None) -> None:
        self._predicate = predicate
        self._changed()

    def sort_by(self, column: int, *, reverse: bool | None = None) -> None:
        """Sorts by `column`; sorting again by the same column flips the order."""
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column % len(self.columns), reverse
        self._changed()

    def visible(self) -> list[str]:
        """Keys of the rows shown, in order; recomputed only after a change."""
        if self._order is None:
            predicate = self._predicate
            keys = [k for k, item in self._items.items() if predicate is None or predicate(item)]
            sort_key = self.columns[self.sort_column].sort_key
            items = self._items
            keys.sort(key=lambda key: (sort_key(items[key]), key), reverse=self.sort_reverse)
            self._order = keys
        return self._order

    def _changed(self) -> None:
        self._order = None
        self.revision += 1
