"""The modal dialogs: confirm an action, the help with the keymap."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from murmur.tui.keymap import KEYMAP


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no for an action that changes the cluster; `y`/Enter yes, `n`/Esc no."""

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 64; height: auto; border: thick $warning; background: $surface; padding: 1 2;
    }
    ConfirmScreen #confirm-warning { color: $warning; margin-top: 1; }
    ConfirmScreen Horizontal { height: auto; margin-top: 1; align: right middle; }
    ConfirmScreen Button { margin-left: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, detail: str = "", warning: str = "") -> None:
        super().__init__()
        self.question, self.detail, self.warning = question, detail, warning

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.question, style="bold"), id="confirm-question")
            if self.detail:
                yield Static(self.detail, id="confirm-detail")
            if self.warning:
                yield Static(self.warning, id="confirm-warning")
            with Horizontal():
                yield Button("No", id="no")
                yield Button("Yes", id="yes", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 96; height: auto; max-height: 90%; border: thick $primary;
        background: $surface; padding: 0 1;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss_help", "Close")
    ]

    def compose(self) -> ComposeResult:
        table = Table(title="murmur top: keys", expand=True, title_style="bold")
        table.add_column("key", style="bold cyan", no_wrap=True)
        table.add_column("where", style="dim", no_wrap=True)
        table.add_column("what")
        for entry in KEYMAP:
            table.add_row(entry.keys, entry.where, entry.what)
        with Vertical():
            yield Static(table)
            yield Static(Text("Esc closes this help.", style="dim"))

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
