"""Fixtures for tests that run a node's executor: its runs directory (nothing under
it outlives the test) and its store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from storage import Store
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
