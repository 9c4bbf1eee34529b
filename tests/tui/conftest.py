"""Helpers for driving `murmur top` in tests: an app attached to a real node, and
waiting for text to appear on its screen."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from murmur import AsyncClient, resolve_connect_config
from murmur.tui import Connection, MurmurTop
from tests.support.nodes import Lab, NodeProcess
from tests.tui.screen_text import screen_text

WAIT_SECONDS = 20.0


def top_for(
    lab: Lab, node: NodeProcess, *, identity: Path | None = None, seeds: Sequence[str] = ()
) -> MurmurTop:
    """The app as `murmur top --node NODE` builds it, with a real AsyncClient."""
    config = resolve_connect_config(node=node.address, identity=identity or lab.admin_identity)

    def client_for(address: str) -> AsyncClient:
        return AsyncClient(dataclasses.replace(config, address=address))

    return MurmurTop(Connection(node.address, client_for, seeds=seeds))


async def wait_for_text(
    pilot: Pilot[Any], *needles: str, seconds: float = WAIT_SECONDS, absent: bool = False
) -> str:
    """Waits until every needle is on screen (or, with `absent`, none is); returns the screen."""
    deadline = time.monotonic() + seconds
    while True:
        await pilot.pause(0.05)
        text = screen_text(pilot.app)
        present = [needle in text for needle in needles]
        if (not any(present)) if absent else all(present):
            return text
        if time.monotonic() > deadline:
            missing = [n for n, p in zip(needles, present, strict=True) if p == absent]
            raise AssertionError(f"{'still' if absent else 'not'} on screen: {missing}\n{text}")
        await asyncio.sleep(0.05)
