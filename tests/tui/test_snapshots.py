"""Each view's layout, pinned as an SVG (pytest-textual-snapshot), on fixed data.

Update after an intended change with `pytest tests/tui/test_snapshots.py
--snapshot-update`, look at the SVGs, and commit them; docs/tui.md shows them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from textual.pilot import Pilot

from murmur.tui import Connection, MurmurTop
from tests.tui.demo_cluster import demo_cluster
from tests.tui.fake_cluster import EPOCH

SIZE = (130, 38)
SnapCompare = Callable[..., bool]


def demo_app() -> MurmurTop:
    fake = demo_cluster()
    return MurmurTop(Connection(fake.address, lambda address: fake), clock=lambda: EPOCH)


async def _settled(pilot: Pilot[Any]) -> None:
    """Waits until the fake's streams are in the state and painted."""
    app = pilot.app
    assert isinstance(app, MurmurTop)
    for _ in range(100):
        await pilot.pause(0.02)
        if len(app.state.jobs) == 10 and len(app.state.nodes) == 6:
            break
    await pilot.pause(0.3)


def snap(snap_compare: SnapCompare, press: Iterable[str] = ()) -> bool:
    return snap_compare(demo_app(), press=list(press), terminal_size=SIZE, run_before=_settled)


def test_cluster_view(snap_compare: SnapCompare) -> None:
    assert snap(snap_compare)


def test_node_view(snap_compare: SnapCompare) -> None:
    assert snap(snap_compare, ["enter", "_", "_"])


def test_jobs_view(snap_compare: SnapCompare) -> None:
    assert snap(snap_compare, ["colon", *"jobs", "enter", "_", "_"])


def test_jobs_view_filtered_by_state(snap_compare: SnapCompare) -> None:
    assert snap(snap_compare, ["colon", *"jobs", "enter", "slash", *"state:pending", "enter", "_"])


def test_job_view_with_live_log(snap_compare: SnapCompare) -> None:
    assert snap(snap_compare, ["colon", *"job j-1001", "enter", "_", "l", "_", "t", "_", "_"])


def test_datasets_view(snap_compare: SnapCompare) -> None:
    assert snap(snap_compare, ["colon", *"datasets", "enter", "_", "_"])


def test_services_view(snap_compare: SnapCompare) -> None:
    assert snap(snap_compare, ["colon", *"services", "enter", "_", "down", "_", "_"])


def test_help(snap_compare: SnapCompare) -> None:
    assert snap(snap_compare, ["question_mark", "_"])


def test_cancel_confirmation(snap_compare: SnapCompare) -> None:
    assert snap(snap_compare, ["colon", *"jobs", "enter", "_", "ctrl+k", "_"])


def test_submit_form(snap_compare: SnapCompare) -> None:
    assert snap(snap_compare, ["colon", *"jobs", "enter", "_", "n", "_", *"resnet", "_"])
