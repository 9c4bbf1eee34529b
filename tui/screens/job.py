"""Job view: the spec, the runs, the events timeline, and the live log (`l`).

The timeline and the log are streams of their own (WatchEvents for this job,
StreamLogs), owned by this screen's workers: they stop when the view is left and
restart, resuming the log where it was, after the dashboard fails over.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from google.protobuf.timestamp_pb2 import Timestamp
from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import RichLog, Static

from murmur import MurmurError
from murmur.tui.columns import job_gpus, job_reason
from murmur.tui.format import JOB_STATE_STYLES, MISSING, human_bytes, job_state_name
from murmur.tui.screens.base import ViewScreen
from murmur.tui.widgets.log_view import LogView
from murmur.v1 import types_pb2

EVENTS_KEPT = 500
LOG_TAIL_LINES = 1000


class JobScreen(ViewScreen):
    VIEW_NAME = "job"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "toggle_log", "Logs"),
        Binding("f", "follow", "Follow"),
        Binding("w", "wrap", "Wrap"),
        Binding("t", "timestamps", "Timestamps"),
        Binding("ctrl+k", "cancel", "Cancel job", priority=True),
    ]
    DEFAULT_CSS = """
    JobScreen #job-top { height: 1fr; }
    JobScreen #job-left { width: 1fr; }
    JobScreen #job-events { width: 1fr; border: round $primary; }
    JobScreen LogView { display: none; }
    JobScreen.-logs LogView { display: block; }
    JobScreen.-logs #job-top { height: 2fr; }
    JobScreen.-logs LogView { height: 3fr; }
    JobScreen #log-status { height: 1; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id
        self._epoch = -1
        self._log_status = "press l for the live log"

    def title_text(self) -> str:
        return f"job {self.job_id}"

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="job-top"):
            with VerticalScroll(id="job-left"):
                yield Static(id="job-spec")
                yield Static(id="job-runs")
            yield RichLog(id="job-events", max_lines=EVENTS_KEPT, markup=False, wrap=True)
        yield LogView(id="job-log")
        yield Static(id="log-status")

    @property
    def log_view(self) -> LogView:
        return self.query_one(LogView)

    @property
    def logs_open(self) -> bool:
        return self.has_class("-logs")

    def focus_body(self) -> None:
        (self.log_view if self.logs_open else self.query_one("#job-left")).focus()

    def on_mount(self) -> None:
        self.query_one("#job-events", RichLog).border_title = "events"
        self.log_view.border_title = "log"
        self.focus_body()

    def update_body(self, *, changed: bool) -> None:
        top = self.top
        if self._epoch != top.connection_epoch and top.connection.attached:
            self._epoch = top.connection_epoch
            self._start_streams()
        job = top.state.jobs.get(self.job_id)
        spec, runs = self.query_one("#job-spec", Static), self.query_one("#job-runs", Static)
        if job is None:
            spec.update(Text(f"No job {self.job_id} is known (yet).", style="yellow"))
            runs.update("")
        else:
            spec.update(job_summary(job))
            runs.update(runs_table(job))
        status = self.log_view.describe_modes() if self.logs_open else ""
        self.query_one("#log-status", Static).update(f"{self._log_status}  {status}".strip())

    # ---------------------------------------------------------------- streams

    def _start_streams(self) -> None:
        self.query_one("#job-events", RichLog).clear()
        self.run_worker(self._follow_events(), group="events", exclusive=True)
        if self.logs_open:
            self.run_worker(self._follow_log(), group="log", exclusive=True)

    async def _follow_events(self) -> None:
        timeline = self.query_one("#job-events", RichLog)
        try:
            async for event in self.top.connection.client.watch_events(subject=self.job_id):
                timeline.write(event_line(event))
        except MurmurError as exc:
            timeline.write(Text(f"event stream ended: {exc}", style="dim"))

    async def _follow_log(self) -> None:
        log = self.log_view
        resume = log.last_offset
        self._set_log_status("log: waiting for the job's run…")
        try:
            async for line in self.top.connection.client.stream_logs(
                self.job_id,
                follow=True,
                tail_lines=0 if resume else LOG_TAIL_LINES,
                from_offset=resume,
            ):
                log.append(line)
                self._set_log_status("log: live")
        except MurmurError as exc:
            self._set_log_status(f"log stream ended: {exc}")
            return
        self._set_log_status("log: the run has ended")

    def _set_log_status(self, text: str) -> None:
        self._log_status = text
        self.refresh_view(force=True)

    # ---------------------------------------------------------------- actions

    def action_toggle_log(self) -> None:
        self.toggle_class("-logs")
        if self.logs_open:
            self.run_worker(self._follow_log(), group="log", exclusive=True)
        else:
            self.workers.cancel_group(self, "log")
            self._log_status = "press l for the live log"
        self.focus_body()
        self.refresh_view(force=True)

    def action_follow(self) -> None:
        self.log_view.toggle_follow()
        self.refresh_view(force=True)

    def action_wrap(self) -> None:
        self.log_view.toggle_wrap()
        self.refresh_view(force=True)

    def action_timestamps(self) -> None:
        self.log_view.toggle_timestamps()
        self.refresh_view(force=True)

    def action_cancel(self) -> None:
        self.top.confirm_cancel(self.job_id)


def _when(stamp: Timestamp) -> str:
    if not stamp.seconds and not stamp.nanos:
        return MISSING
    return datetime.fromtimestamp(stamp.seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def job_summary(job: types_pb2.Job) -> RenderableType:
    spec = job.spec
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row(
        "state", Text(job_state_name(job.state), style=JOB_STATE_STYLES.get(job.state, ""))
    )
    if reason := job_reason(job):
        grid.add_row("reason", reason)
    grid.add_row("name", spec.name or MISSING)
    grid.add_row("user", job.user)
    grid.add_row("queue", f"{spec.queue or 'default'} · priority {spec.priority}")
    runtime = types_pb2.JobRuntime.Name(spec.runtime).removeprefix("JOB_RUNTIME_").lower()
    grid.add_row("runtime", runtime + (f" · {spec.image}" if spec.image else ""))
    grid.add_row("command", " ".join(spec.command))
    resources = f"GPUs {job_gpus(job)}"
    if spec.cpus:
        resources += f" · CPUs {spec.cpus:g}"
    if spec.memory_bytes:
        resources += f" · memory {human_bytes(spec.memory_bytes)}"
    grid.add_row("asks", resources)
    if spec.datasets:
        grid.add_row("datasets", ", ".join(spec.datasets))
    grid.add_row("submitted", _when(job.submitted_at))
    grid.add_row("attempts", f"{job.attempts} (retries {spec.retries})")
    if job.HasField("exit_code"):
        grid.add_row("exit code", str(job.exit_code))
    return grid


def runs_table(job: types_pb2.Job) -> RenderableType:
    if not job.runs:
        return Text("no runs yet", style="dim")
    table = Table(
        title="runs", title_justify="left", title_style="bold", expand=True, box=box.SIMPLE_HEAD
    )
    for title in ("#", "NODE", "GPUS", "STATE", "STARTED", "EXIT", "REASON"):
        table.add_column(title, no_wrap=title != "REASON")
    for run in job.runs:
        table.add_row(
            str(run.attempt),
            f"{run.node} (rank {run.node_rank})" if job.spec.nodes > 1 else run.node,
            ",".join(str(i) for i in run.gpu_indices) or MISSING,
            Text(job_state_name(run.state), style=JOB_STATE_STYLES.get(run.state, "")),
            _when(run.started_at),
            str(run.exit_code) if run.HasField("exit_code") else MISSING,
            run.reason,
        )
    return table


def event_line(event: types_pb2.Event) -> Text:
    moment = datetime.fromtimestamp(event.time.ToNanoseconds() / 1e9, UTC)
    line = Text(moment.strftime("%H:%M:%S "), style="dim")
    line.append(event.kind, style="bold")
    line.append(f" {event.message}")
    return line
