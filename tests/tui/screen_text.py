"""What a user would read on the app's screen right now, as plain text.

Pilot tests assert on this rather than on widget internals, so they check what is
painted (the same compositor output `export_screenshot` uses).
"""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from textual.app import App


def screen_text(app: App[Any]) -> str:
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False,
        color_system=None,
    )  # fmt: skip
    update = app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens, simplify=True
    )
    console.print(update)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())
