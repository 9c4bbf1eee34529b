"""`MurmurTop`: the app, its navigation, its refresh tick and its actions.

Navigation is k9s-like: four top-level views (cluster, jobs, datasets, services)
are Textual modes, each with its own stack; node and job details are pushed on top.
State arrives through `LiveFeed` and is painted on a fixed tick, so updates are
batched however fast the streams run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from murmur import MurmurError
from murmur.tui.actions import cancel_warning, describe_failure, role_warning
from murmur.tui.commands import CommandError, parse_command
from murmur.tui.connection import Connection
from murmur.tui.feed import LiveFeed
from murmur.tui.format import job_state_name, node_state_name
from murmur.tui.screens.base import ViewScreen
from murmur.tui.screens.cluster import ClusterScreen
from murmur.tui.screens.datasets import DatasetsScreen
from murmur.tui.screens.dialogs import ConfirmScreen, HelpScreen
from murmur.tui.screens.job import JobScreen
from murmur.tui.screens.jobs import JobsScreen
from murmur.tui.screens.node import NodeScreen
from murmur.tui.screens.services import ServicesScreen
from murmur.tui.screens.submit import SubmitScreen
from murmur.tui.state import ClusterState
from murmur.v1 import types_pb2

REFRESH_SECONDS = 0.1
"""How often the screen on top is brought up to date: at most ten repaints a second."""
AGE_REFRESH_TICKS = 10
"""Every this many ticks a view repaints even without news, so ages keep counting."""


class MurmurTop(App[None]):
    TITLE = "murmur top"
    ENABLE_COMMAND_PALETTE = False
    MODES: ClassVar[dict[str, type[ViewScreen]]] = {  # type: ignore[assignment]
        "cluster": ClusterScreen,
        "jobs": JobsScreen,
        "datasets": DatasetsScreen,
        "services": ServicesScreen,
    }
    DEFAULT_MODE = "cluster"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("colon", "prompt('command')", "Views", key_display=":"),
        Binding("slash", "prompt('filter')", "Filter", key_display="/"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("escape", "back", "Back", show=False),
        Binding("q", "quit", "Quit", show=False),
    ]

    def __init__(
        self,
        connection: Connection,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """
        Args:
            connection: The node to attach to, and how to reach others.
            refresh_seconds: The repaint tick.
            clock: Seconds since the epoch, for ages; snapshot tests fix it.
        """
        super().__init__()
        self.connection = connection
        self.clock = clock
        self.state = ClusterState()
        self.connection_epoch = 0
        """Grows at each successful attach; views restart their own streams on a change."""
        self.connection_changed = False
        self._refresh_seconds = refresh_seconds
        self._ticks = 0
        self._feed = LiveFeed(connection, self.state, on_connection=self._on_connection)

    def on_mount(self) -> None:
        self.run_worker(self._feed.run(), name="live feed", group="feed")
        self.set_interval(self._refresh_seconds, self._tick)

    async def on_unmount(self) -> None:
        await self.connection.close()

    # ---------------------------------------------------------------- refresh

    def _on_connection(self, notice: str, attached: bool) -> None:
        self.connection_changed = True
        if attached:
            self.connection_epoch += 1
        if notice:
            self.notify(notice, severity="warning" if attached else "error", timeout=8)

    def _tick(self) -> None:
        self._ticks += 1
        if not self.screen_stack:
            # The app is closing (its screens went first) and the timer fired once
            # more: there is nothing to refresh, and asking for the screen raises.
            return
        screen = self.screen
        if isinstance(screen, ViewScreen):
            screen.refresh_view(force=self._ticks % AGE_REFRESH_TICKS == 0)
            self.connection_changed = False

    # ------------------------------------------------------------- navigation

    def action_prompt(self, mode: str) -> None:
        if isinstance(self.screen, ViewScreen):
            self.screen.open_prompt(mode)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_back(self) -> None:
        screen = self.screen
        if isinstance(screen, ViewScreen) and screen.back():
            return
        if isinstance(screen, NodeScreen | JobScreen):
            self.pop_screen()

    async def run_command(self, text: str) -> None:
        """Acts on a `:` command line; a line naming no view becomes a notification."""
        try:
            command = parse_command(text)
        except CommandError as exc:
            self.notify(str(exc), severity="warning")
            return
        if command.view == "quit":
            self.exit()
        elif command.view == "help":
            self.action_help()
        elif command.view == "node":
            await self.switch_mode("cluster")
            self.open_node(command.argument)
        elif command.view == "job":
            await self.switch_mode("jobs")
            self.open_job(command.argument)
        else:
            await self.switch_mode(command.view)
            while isinstance(self.screen, NodeScreen | JobScreen):
                self.pop_screen()

    def open_node(self, name: str) -> None:
        self.push_screen(NodeScreen(name))

    def open_job(self, job_id: str) -> None:
        self.push_screen(JobScreen(job_id))

    # ---------------------------------------------------------------- actions

    def confirm_cancel(self, job_id: str) -> None:
        job = self.state.jobs.get(job_id)
        detail = (
            f"{job.spec.name or 'unnamed'} of {job.user}, {job_state_name(job.state)}"
            if job is not None
            else "not seen by this dashboard yet"
        )
        warning = cancel_warning(job, self.connection.identity)

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._cancel(job_id), group="actions")

        self.push_screen(ConfirmScreen(f"Cancel job {job_id}?", detail, warning), answered)

    async def _cancel(self, job_id: str) -> None:
        try:
            job = await self.connection.client.cancel_job(job_id, reason="cancelled in murmur top")
        except MurmurError as exc:
            self.notify(describe_failure(f"cancel job {job_id}", exc), severity="error")
            return
        self.state.apply_job(job, unless_older=True)
        self.notify(f"cancel of job {job_id} accepted: {job_state_name(job.state)}")

    def confirm_drain(self, name: str) -> None:
        warning = role_warning(self.connection.role, types_pb2.ROLE_ADMIN)
        detail = "The node finishes its running jobs and starts no new ones."

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._drain(name), group="actions")

        self.push_screen(ConfirmScreen(f"Drain node {name}?", detail, warning), answered)

    async def _drain(self, name: str) -> None:
        try:
            node = await self.connection.client.drain_node(name)
        except MurmurError as exc:
            self.notify(describe_failure(f"drain node {name}", exc), severity="error")
            return
        self.state.apply_node(node)
        self.notify(f"drain node {name} accepted: {node_state_name(node.state)}")

    def open_submit_form(self) -> None:
        def submitted(spec: types_pb2.JobSpec | None) -> None:
            if spec is not None:
                self.run_worker(self._submit(spec), group="actions")

        self.push_screen(SubmitScreen(), submitted)
        warning = role_warning(self.connection.role, types_pb2.ROLE_MEMBER)
        if warning:
            self.notify(warning, severity="warning")

    async def _submit(self, spec: types_pb2.JobSpec) -> None:
        try:
            job = await self.connection.client.submit_job(spec)
        except MurmurError as exc:
            self.notify(describe_failure("submit job", exc), severity="error")
            return
        self.state.apply_job(job, unless_older=True)
        self.notify(f"submitted job {job.id}")
