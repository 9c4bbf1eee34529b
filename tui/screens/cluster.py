"""Cluster view: every node, its state, GPUs in use, telemetry and running jobs."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from murmur.tui.columns import NODE_COLUMNS, NODE_FILTER
from murmur.tui.screens.table_screen import TableScreen
from murmur.tui.widgets.virtual_table import VirtualTable
from murmur.v1 import types_pb2


class ClusterScreen(TableScreen[types_pb2.NodeInfo]):
    VIEW_NAME = "cluster"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("d", "drain", "Drain")]

    def __init__(self) -> None:
        super().__init__(NODE_COLUMNS, NODE_FILTER)
        self._seen = -1

    def sync_model(self) -> None:
        state = self.top.state
        changed = state.nodes_changed_since(self._seen)
        self.model.upsert_many((name, state.nodes[name]) for name in changed)
        self._seen = state.revision

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        self.top.open_node(event.key)

    def action_drain(self) -> None:
        node = self.selected()
        if node is not None:
            self.top.confirm_drain(node.name)
