"""Jobs view: the queue and the history, with why each pending job waits."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from murmur.tui.columns import JOB_COLUMNS, JOB_DEFAULT_SORT, JOB_FILTER
from murmur.tui.screens.table_screen import TableScreen
from murmur.tui.widgets.virtual_table import VirtualTable
from murmur.v1 import types_pb2


class JobsScreen(TableScreen[types_pb2.Job]):
    VIEW_NAME = "jobs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "submit", "New job"),
        Binding("ctrl+k", "cancel", "Cancel job", priority=True),
    ]

    def __init__(self) -> None:
        super().__init__(JOB_COLUMNS, JOB_FILTER, sort_column=JOB_DEFAULT_SORT)
        self._seen = -1

    def sync_model(self) -> None:
        state = self.top.state
        changed = state.jobs_changed_since(self._seen)
        self.model.upsert_many((job_id, state.jobs[job_id]) for job_id in changed)
        self._seen = state.revision

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        self.top.open_job(event.key)

    def action_submit(self) -> None:
        self.top.open_submit_form()

    def action_cancel(self) -> None:
        job = self.selected()
        if job is not None:
            self.top.confirm_cancel(job.id)
