"""The bottom line where `:` commands and `/` filters are typed.

One Input, two modes; hidden until a key opens it. A filter applies as you type
(the screen re-filters its model, which is cheap), a command on Enter.
"""

from __future__ import annotations

from typing import Literal

from textual.message import Message
from textual.widgets import Input

PromptMode = Literal["command", "filter"]


class Prompt(Input):
    DEFAULT_CSS = """
    Prompt, Prompt:focus {
        display: none; border: none; height: 1; padding: 0 1;
        background: $boost;
    }
    Prompt.-open { display: block; }
    """

    class Finished(Message):
        """Enter was pressed: the screen acts on `value` in `mode`."""

        def __init__(self, mode: PromptMode, value: str) -> None:
            super().__init__()
            self.mode = mode
            self.value = value

    def __init__(self) -> None:
        super().__init__(id="prompt")
        self.mode: PromptMode = "command"

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    def open(self, mode: PromptMode, value: str = "") -> None:
        self.mode = mode
        self.placeholder = (
            "view: cluster | node NAME | jobs | job ID | datasets | help | quit"
            if mode == "command"
            else "filter: words or field:value (user: state: queue: node:)"
        )
        self.value = value
        self.add_class("-open")
        self.focus()

    def close(self) -> None:
        self.remove_class("-open")

    async def action_submit(self) -> None:
        self.post_message(self.Finished(self.mode, self.value))
        self.close()
