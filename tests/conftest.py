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


_HEAVY_FIXTURES = frozenset({"lab", "ca_node", "docker_engine"})
"""Fixtures that start real daemons or a Docker engine."""
_HEAVY_SOURCE = (
    "subprocess", "Popen", "create_subprocess", "start_cluster", "ProcessRuntime",
    "RunExecutor", "executor(", "run_test(", "inprocess", "monotonic",
)  # fmt: skip
"""What a test module that starts processes, drives a terminal app or times itself
says somewhere in its text."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks ``exclusive`` every test that starts real processes, drives a terminal
    app or measures time, and every ``serial`` one (marked by hand). ``make test``
    runs the rest first, two at a time (pure code, CPU-bound: twice as fast on two
    cores); then the exclusive ones but serial, two at a time, each test file on one
    worker (they mostly wait on daemons, so two leave the machine half idle, and a
    file's module-scoped cluster stays one); then the serial ones alone: they load
    the machine or a clock on purpose (chaos, soak, bursts), cut networks in shared
    namespaces, drive a real terminal, or look at the whole host."""
    heavy_modules: dict[Path, bool] = {}
    for item in items:
        path = item.path
        heavy = heavy_modules.get(path)
        if heavy is None:
            text = path.read_text(errors="replace") if path.suffix == ".py" else ""
            heavy = heavy_modules[path] = any(word in text for word in _HEAVY_SOURCE)
        if (
            heavy
            or _HEAVY_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            or item.get_closest_marker("serial") is not None
        ):
            item.add_marker(pytest.mark.exclusive)
