"""The submit form: a job from a few fields; the node validates it again."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from murmur.tui.job_form import FormError, JobForm, spec_from_form
from murmur.v1 import types_pb2

FIELDS: tuple[tuple[str, str, str], ...] = (
    ("name", "name", "train-resnet"),
    ("command", "command", "python train.py --epochs 10"),
    ("runtime", "runtime", "process or docker"),
    ("image", "image", "docker image (docker runtime)"),
    ("gpus", "GPUs", "0"),
    ("gpu_model", "GPU model", "any"),
    ("queue", "queue", "default"),
    ("priority", "priority", "0"),
)


class SubmitScreen(ModalScreen[types_pb2.JobSpec | None]):
    """Returns the JobSpec to submit, or None when the form is abandoned."""

    DEFAULT_CSS = """
    SubmitScreen { align: center middle; }
    SubmitScreen > Vertical {
        width: 76; height: auto; border: thick $accent; background: $surface; padding: 0 1;
    }
    SubmitScreen .field { height: 3; }
    SubmitScreen Label { width: 12; padding: 1 1 0 0; }
    SubmitScreen Input { width: 1fr; }
    SubmitScreen #form-error { color: $error; height: auto; }
    SubmitScreen #form-buttons { height: auto; align: right middle; }
    SubmitScreen Button { margin-left: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "abandon", "Cancel"),
        Binding("ctrl+s", "submit", "Submit"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("[b]Submit a job[/b]  (ctrl+s submits, Esc abandons)")
            for field, label, hint in FIELDS:
                with Horizontal(classes="field"):
                    yield Label(label)
                    value = "process" if field == "runtime" else ""
                    yield Input(value=value, placeholder=hint, id=f"form-{field}")
            yield Static(id="form-error")
            with Horizontal(id="form-buttons"):
                yield Button("Cancel", id="abandon")
                yield Button("Submit", id="submit", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#form-name", Input).focus()

    def form(self) -> JobForm:
        values = {field: self.query_one(f"#form-{field}", Input).value for field, _, _ in FIELDS}
        return JobForm(**values)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.action_abandon()

    def on_input_submitted(self) -> None:
        self.action_submit()

    def action_submit(self) -> None:
        try:
            spec = spec_from_form(self.form())
        except FormError as exc:
            self.query_one("#form-error", Static).update(str(exc))
            return
        self.dismiss(spec)

    def action_abandon(self) -> None:
        self.dismiss(None)
