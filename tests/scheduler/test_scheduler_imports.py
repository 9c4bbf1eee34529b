"""The scheduler stays pure policy: it imports the standard library and itself only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from murmur import scheduler

PACKAGE = Path(scheduler.__file__).parent


def imported_top_level_modules(path: Path) -> set[str]:
    """Top-level names imported, ``murmur.scheduler`` counted as itself."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            itself = module == "murmur.scheduler" or module.startswith("murmur.scheduler.")
            names.add("murmur.scheduler" if itself else module.split(".")[0])
    return names


def test_scheduler_imports_only_the_standard_library_and_itself() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) > 5
    for path in files:
        imported = imported_top_level_modules(path)
        foreign = imported - set(sys.stdlib_module_names) - {"murmur.scheduler"}
        assert foreign == set(), f"{path.name} imports {sorted(foreign)}"
