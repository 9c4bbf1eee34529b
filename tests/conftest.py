"""Fixtures shared by the whole suite."""

from __future__ import annotations

import importlib.abc
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

from tests.support.docker_engine import docker_engine_fixture  # noqa: F401
from tests.support.import_contracts import OLD_TOP_LEVEL_NAMES
from tests.support.nodes import Lab, NodeProcess, lab_fixture


class _OneImportName(importlib.abc.MetaPathFinder):
    """The repository root is on the tests' path (for ``tests.*``), so node/ would
    import as ``node`` too: a second copy of every module, which a patch by name
    ("storage.x.y") would change while the code under test, ``murmur.storage``, runs
    on. Refused here, so such a slip fails where it is made."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if fullname in OLD_TOP_LEVEL_NAMES:
            raise ModuleNotFoundError(
                f"no module named {fullname!r}: our code is imported as murmur.{fullname}"
            )


sys.meta_path.insert(0, _OneImportName())

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
