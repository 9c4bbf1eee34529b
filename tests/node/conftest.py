"""Fixtures for tests of a node's parts: an executor's runs directory (nothing under
it outlives the test) and its store; the queue planner's plans from scratch."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from murmur.node.control.leader.placement import plan_keeping_builder
from murmur.node.control.queue.state import ControlState
from murmur.storage import Store
from tests.support.run_processes import kill_everything_under


@pytest.fixture
def runs_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "runs"
    path.mkdir()
    yield path
    kill_everything_under(path)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(tmp_path / "node.sqlite") as opened:
        yield opened


@pytest.fixture
def full_plans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The applied index of the state each plan from scratch of the queue planner
    was made from, in order."""
    made: list[int] = []

    def counted(state: ControlState, *args: Any, **kwargs: Any) -> Any:
        made.append(state.applied_index)
        return plan_keeping_builder(state, *args, **kwargs)

    monkeypatch.setattr("murmur.node.control.leader.planner.plan_keeping_builder", counted)
    return made
