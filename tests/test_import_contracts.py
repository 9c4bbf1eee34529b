"""Dependencies point one way: the contracts between Murmur's packages, checked on
every import statement of the source (docs/architecture.md draws them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.import_contracts import (
    Acyclic,
    Contracts,
    Forbidden,
    Independent,
    OnlyThrough,
    check,
)

ROOT = Path(__file__).resolve().parents[1]
NODE = "murmur.node"
CLIENT_LIBRARY = ("murmur._client", "murmur._sync", "murmur._config", "murmur._errors")

ROOMS = (
    "murmur",
    "murmur.__main__",  # `python -m murmur`: the CLI's entry, above it
    "murmur._cli",
    "murmur.v1",
    "murmur.tui",
    "murmur.scheduler",
    "murmur.storage",
    "murmur.certs",
    "murmur.bundle",
    f"{NODE}.api",
    f"{NODE}.identity",
    f"{NODE}.gossip",
    f"{NODE}.membership",
    f"{NODE}.control",
    f"{NODE}.control.raft",
    f"{NODE}.control.consensus",
    f"{NODE}.control.queue",
    f"{NODE}.control.leader",
    f"{NODE}.agent",
    f"{NODE}.agent.runtimes",
    f"{NODE}.agent.gpus",
    f"{NODE}.jobspec",
    f"{NODE}.router",
)


HOUSE = tuple(room for room in ROOMS if room.count(".") <= 2 and room != f"{NODE}.agent.runtimes")
"""The rooms taken whole: node/control with all it holds, node/agent likewise, so an
arrow from one sub-room back to a room that uses another is a cycle too."""


def node_root_modules() -> tuple[str, ...]:
    """The daemon's wiring at the root of node/: each is a room of its own."""
    return tuple(f"{NODE}.{path.stem}" for path in sorted((ROOT / "node").glob("*.py")))


def murmur_contracts(extra_sources: tuple[Path, ...] = ()) -> Contracts:
    return Contracts(
        independent=[
            Independent(f"murmur.{pure}", why="a pure core, usable and testable alone")
            for pure in ("scheduler", "storage", "certs", "bundle")
        ],
        only_through=[
            OnlyThrough(
                "murmur.tui",
                modules=("murmur",),
                packages=("murmur.v1",),
                why="murmur top is a client like any other",
            )
        ],
        forbidden=[
            Forbidden(
                f"{NODE}.agent",
                (f"{NODE}.control", f"{NODE}.api", f"{NODE}.identity"),
                "the control plane drives the agent, never the other way",
            ),
            Forbidden(
                f"{NODE}.control",
                (f"{NODE}.api",),
                "the API calls the control plane; the leader reaches nodes through the "
                "protocols it declares (node/control/leader/node_calls.py)",
            ),
            Forbidden(
                f"{NODE}.jobspec",
                (f"{NODE}.control", f"{NODE}.agent", f"{NODE}.api"),
                "both sides share it",
            ),
            *(
                Forbidden(
                    module,
                    (NODE, "murmur.storage", "murmur.scheduler", "murmur.tui", "murmur._cli"),
                    "the client library goes into training environments without the daemon",
                )
                for module in CLIENT_LIBRARY
            ),
        ],
        acyclic=[
            Acyclic((*ROOMS, *node_root_modules()), why="dependencies point one way"),
            Acyclic(
                (*HOUSE, *node_root_modules()),
                why="between the daemon's rooms, taken whole, too",
            ),
        ],
        extra_sources=extra_sources,
    )


def test_murmur_keeps_its_import_contracts() -> None:
    broken = check(ROOT, murmur_contracts(extra_sources=(ROOT / "tests",)))
    assert broken == [], "\n".join(broken)


@pytest.fixture
def copy_of_the_source(tmp_path: Path) -> Path:
    """The package as the wheel has it (links copied as folders), to plant in."""
    shutil.copytree(
        ROOT / "murmur",
        tmp_path / "murmur",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


PLANTS = [
    pytest.param(
        "node/agent/executor.py",
        "from murmur.node.control.queue import ClusterJobs",
        "murmur.node.agent must not import",
        id="agent-imports-control",
    ),
    pytest.param(
        "scheduler/plan.py",
        "from murmur.storage import Store",
        "murmur.scheduler imports no other murmur package",
        id="scheduler-imports-storage",
    ),
    pytest.param(
        "storage/store.py",
        "import murmur.certs",
        "murmur.storage imports no other murmur package",
        id="storage-imports-certs",
    ),
    pytest.param(
        "tui/app.py",
        "from murmur.node.config import NodeConfig",
        "murmur.tui reaches murmur only through murmur, murmur.v1.*",
        id="tui-imports-the-daemon",
    ),
    pytest.param(
        "tui/app.py",
        "from murmur import _config",
        "murmur.tui reaches murmur only through",
        id="tui-imports-a-private-client-module",
    ),
    pytest.param(
        "_client.py",
        "from murmur.node import errors",
        "the client library goes into training environments",
        id="client-imports-the-daemon",
    ),
    pytest.param(
        "node/gossip/machine.py",
        "from murmur.node.membership import runner",
        "a package cycle: murmur.node.gossip -> murmur.node.membership",
        id="cycle",
    ),
    pytest.param(
        "node/control/consensus/wire.py",
        "from murmur.node.control import drain",
        "a package cycle: murmur.node.control",
        id="cycle-through-the-parent-room",
    ),
    pytest.param(
        "node/control/leader/duties.py",
        "from murmur.node.api.services.runs import RunStubs",
        "murmur.node.control must not import murmur.node.api",
        id="control-imports-the-api",
    ),
    pytest.param(
        "node/control/leader/dispatch.py",
        "from murmur.node.api.rpc import status_map",
        "a package cycle",
        id="cycle-between-rooms-taken-whole",
    ),
    pytest.param(
        "node/control/raft/log.py",
        "from node.errors import NodeError",
        "imports node.errors.NodeError: our code is murmur.* only",
        id="old-top-level-name",
    ),
]


@pytest.mark.parametrize(("path", "line", "expected"), PLANTS)
def test_a_planted_violation_is_reported(
    copy_of_the_source: Path, path: str, line: str, expected: str
) -> None:
    assert check(copy_of_the_source, murmur_contracts()) == []
    planted = copy_of_the_source / "murmur" / path
    planted.write_text(planted.read_text() + f"\n{line}\n")

    broken = check(copy_of_the_source, murmur_contracts())

    assert len(broken) >= 1
    assert all(path.split("/")[-1] in sentence or "cycle" in sentence for sentence in broken)
    assert any(expected in sentence for sentence in broken), broken


def test_an_import_under_type_checking_counts(copy_of_the_source: Path) -> None:
    planted = copy_of_the_source / "murmur" / "node" / "agent" / "lease.py"
    planted.write_text(
        planted.read_text()
        + "\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        + "    from murmur.node.control.leader import duties\n"
    )
    assert check(copy_of_the_source, murmur_contracts()) != []
