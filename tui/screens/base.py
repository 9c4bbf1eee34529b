"""What every view shares: the header, the prompt, the footer, and the refresh hook.

The app calls `refresh_view` on its tick for the screen on top only; a view
compares the state's revision with the one it last showed and does nothing when
they match, so an idle dashboard costs almost nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from murmur.tui.widgets.header import ConnectionBar
from murmur.tui.widgets.prompt import Prompt

if TYPE_CHECKING:
    from murmur.tui.app import MurmurTop


class ViewScreen(Screen[None]):
    VIEW_NAME: ClassVar[str] = ""
    FILTERABLE: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self.shown_revision = -1

    @property
    def top(self) -> MurmurTop:
        return cast("MurmurTop", self.app)

    def compose(self) -> ComposeResult:
        yield ConnectionBar()
        yield from self.compose_body()
        yield Prompt()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        raise NotImplementedError

    def on_screen_resume(self) -> None:
        self.refresh_view(force=True)

    def refresh_view(self, *, force: bool = False) -> None:
        """Brings the screen up to date with the app's state if it changed."""
        if not self.is_mounted:
            return  # the app's repaint tick can fall between a push and the compose
        top = self.top
        revision = top.state.revision
        if not force and revision == self.shown_revision and not top.connection_changed:
            return
        self.query_one(ConnectionBar).show(self.title_text(), top.connection, top.state)
        self.update_body(changed=revision != self.shown_revision or force)
        self.shown_revision = revision

    def title_text(self) -> str:
        """The view's name in the header, with the filter when one applies."""
        return f"{self.VIEW_NAME} /{self.filter_text}" if self.filter_text else self.VIEW_NAME

    def update_body(self, *, changed: bool) -> None:
        """Redraws what the state shows; `changed` is False when only time passed."""

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self.refresh_view(force=True)

    def open_prompt(self, mode: str) -> None:
        prompt = self.query_one(Prompt)
        if mode == "filter":
            if self.FILTERABLE:
                prompt.open("filter", self.filter_text)
            else:
                self.notify("this view has nothing to filter", severity="warning")
        else:
            prompt.open("command")

    def close_prompt(self) -> bool:
        """Closes an open prompt (clearing a filter being typed); False if none was open."""
        prompt = self.query_one(Prompt)
        if not prompt.is_open:
            return False
        if prompt.mode == "filter":
            self.apply_filter("")
        prompt.close()
        self.focus_body()
        return True

    def focus_body(self) -> None:
        """Gives the focus back to the view's main widget."""

    def on_input_changed(self, event: Prompt.Changed) -> None:
        prompt = self.query_one(Prompt)
        if event.input is prompt and prompt.mode == "filter" and prompt.is_open:
            self.apply_filter(event.value)

    async def on_prompt_finished(self, event: Prompt.Finished) -> None:
        self.focus_body()
        if event.mode == "filter":
            self.apply_filter(event.value)
        else:
            await self.top.run_command(event.value)

    def back(self) -> bool:
        """Esc after the prompt: clears the filter, else leaves a detail view."""
        if self.close_prompt():
            return True
        if self.filter_text:
            self.apply_filter("")
            return True
        return False
