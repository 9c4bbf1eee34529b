"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.docker_engine import docker_engine_fixture  # noqa: F401
from tests.support.nodes import Lab, NodeProcess, lab_fixture


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A fresh lab CA with an admin identity; nodes started from it die with the test."""
    yield from lab_fixture(tmp_path)


@pytest.fixture
def ca_node(lab: Lab) -> NodeProcess:
    """A running node holding the lab CA, with a simulated 8xA100-80GB inventory."""
    return lab.start_node(
        "node-1", data_dir=lab.first_data_dir, extra_args=["--simulate-gpus", "8xA100-80GB"]
    )
