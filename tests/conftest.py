"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.support.docker_engine import docker_engine_fixture  # noqa: F401
from tests.support.nodes import Lab, NodeProcess, lab_fixture

# CI runs on a loaded 2-core machine: no per-example deadline (a slow example is not a
# failure), the same examples every run, no example database. Registered here rather
# than left to the hypothesis version's own "ci" profile.
settings.register_profile(
    "murmur-ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
if os.environ.get("CI"):
    settings.load_profile("murmur-ci")


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
