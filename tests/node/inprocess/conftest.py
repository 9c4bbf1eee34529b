"""Fixtures of the in-process tests: a cluster of the daemon's objects on a memory
network, stopped (every loop cancelled, every store closed) when the test ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.node.inprocess.inprocess_cluster import InProcessCluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[InProcessCluster]:
    made = InProcessCluster(tmp_path)
    try:
        yield made
    finally:
        await made.close()
