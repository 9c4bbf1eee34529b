"""Datasets view: what lives where, and how big it is.

Datasets have no watch stream: the catalog is read when the view opens, on
ctrl+r, and whenever a node's NodeInfo (which carries its datasets) changes.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from murmur import MurmurError
from murmur.tui.actions import describe_failure
from murmur.tui.columns import DATASET_COLUMNS, DATASET_FILTER
from murmur.tui.screens.table_screen import TableScreen
from murmur.v1 import types_pb2


def dataset_key(dataset: types_pb2.Dataset) -> str:
    return f"{dataset.node}/{dataset.name}"


class DatasetsScreen(TableScreen[types_pb2.Dataset]):
    VIEW_NAME = "datasets"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+r", "reload", "Reload")]

    def __init__(self) -> None:
        super().__init__(DATASET_COLUMNS, DATASET_FILTER)
        self._seen = -1

    def on_mount(self) -> None:
        super().on_mount()
        self.action_reload()

    def sync_model(self) -> None:
        state = self.top.state
        for name in state.nodes_changed_since(self._seen):
            self.model.upsert_many(
                (dataset_key(dataset), dataset) for dataset in state.nodes[name].datasets
            )
        self._seen = state.revision

    def action_reload(self) -> None:
        self.run_worker(self._load(), group="datasets", exclusive=True)

    async def _load(self) -> None:
        try:
            datasets = await self.top.connection.client.list_datasets()
        except MurmurError as exc:
            self.notify(describe_failure("list datasets", exc), severity="error")
            return
        self.model.upsert_many((dataset_key(dataset), dataset) for dataset in datasets)
        self.refresh_view(force=True)
