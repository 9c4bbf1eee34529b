"""Import contracts: which of Murmur's packages may import which, checked from the
source (every ``import`` statement, those under ``TYPE_CHECKING`` included).

A contract names packages by their import name (``murmur.node.agent``); a module
belongs to the deepest package that names it. ``check`` reads a source tree laid out
as the installed package (``ROOT/murmur/...``, following the links that map node/,
scheduler/... into it) and returns every broken contract as a sentence.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

OLD_TOP_LEVEL_NAMES = ("node", "scheduler", "storage", "certs", "tui", "proto")
"""What the repository's folders were imported as before the one import name."""


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    path: Path
    line: int


@dataclass(frozen=True)
class Forbidden:
    """Modules in ``source`` import nothing in ``targets``."""

    source: str
    targets: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class Independent:
    """``package`` imports no other package of ``family`` (the standard library and
    third-party packages are fine)."""

    package: str
    family: str = "murmur"
    why: str = ""


@dataclass(frozen=True)
class OnlyThrough:
    """``source`` imports nothing of ``family`` but itself, the modules named in
    ``modules`` (those alone: ``murmur`` is the package's public names, not its
    subpackages) and the subtrees named in ``packages``."""

    source: str
    modules: tuple[str, ...]
    packages: tuple[str, ...] = ()
    family: str = "murmur"
    why: str = ""


@dataclass(frozen=True)
class Acyclic:
    """No cycle among the packages named ``layers`` (each stands for its subtree)."""

    layers: tuple[str, ...]
    why: str = ""


@dataclass
class Contracts:
    forbidden: Sequence[Forbidden] = ()
    independent: Sequence[Independent] = ()
    only_through: Sequence[OnlyThrough] = ()
    acyclic: Sequence[Acyclic] = ()
    top_level: str = "murmur"
    extra_sources: Sequence[Path] = field(default_factory=tuple)
    """Trees (tests, benchmarks) whose imports must use the one import name too."""


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path, top_level: str) -> Iterator[Path]:
    """Every .py file of the package, through the links into it (os.walk would not
    follow them; rglob on a link to a directory does)."""
    seen: set[Path] = set()
    stack = [root / top_level]
    while stack:
        directory = stack.pop()
        for entry in sorted(directory.iterdir()):
            if entry.name == "__pycache__":
                continue
            if entry.is_dir():
                real = entry.resolve()
                if real not in seen:
                    seen.add(real)
                    stack.append(entry)
            elif entry.suffix == ".py":
                yield entry


def imports_of(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """The absolute names a module imports: ``from a.b import c`` yields ``a.b.c`` (c
    may be a module or a name in a.b; both are within a.b)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                drop = node.level - (1 if is_package else 0)
                base = base[: len(base) - drop] if drop else base
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            for alias in node.names:
                yield (f"{prefix}.{alias.name}" if alias.name != "*" else prefix), node.lineno


def collect(root: Path, top_level: str) -> list[Import]:
    """Every import in the package, each resolved to the module it loads: ``from
    murmur import AsyncClient`` loads ``murmur``, ``from murmur import node`` loads
    ``murmur.node``."""
    files = list(source_files(root, top_level))
    modules = {module_name(path, root) for path in files}
    found = []
    for path in files:
        module = module_name(path, root)
        for imported, line in imports_of(path, module):
            if imported not in modules and imported.rpartition(".")[0] in modules:
                imported = imported.rpartition(".")[0]
            found.append(Import(module, imported, path, line))
    return found


def _where(item: Import, root: Path) -> str:
    try:
        shown = item.path.relative_to(root)
    except ValueError:
        shown = item.path
    return f"{shown}:{item.line}"


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(vertex: str) -> list[str] | None:
        state[vertex] = 1
        stack.append(vertex)
        for nxt in sorted(edges.get(vertex, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[vertex] = 2
        return None

    for vertex in sorted(edges):
        if vertex not in state and (found := visit(vertex)):
            return found
    return None


def check(root: Path, contracts: Contracts) -> list[str]:
    """Every broken contract under ``root``, as one sentence each (empty: all kept)."""
    top = contracts.top_level
    found = collect(root, top)
    ours = [item for item in found if within(item.imported, top)]
    broken: list[str] = []

    # The package's imports are read once (``found``; resolving keeps the top-level
    # name); the extra trees (tests) only for this rule.
    everywhere = list(found)
    for extra in contracts.extra_sources:
        for path in sorted(extra.rglob("*.py")):
            module = module_name(path, root)
            everywhere += [
                Import(module, name, path, line) for name, line in imports_of(path, module)
            ]
    for item in everywhere:
        if item.imported.split(".")[0] in OLD_TOP_LEVEL_NAMES:
            broken.append(f"{_where(item, root)} imports {item.imported}: our code is {top}.* only")

    for rule in contracts.forbidden:
        for item in ours:
            if within(item.importer, rule.source) and any(
                within(item.imported, target) for target in rule.targets
            ):
                broken.append(
                    f"{_where(item, root)}: {item.importer} imports {item.imported} "
                    f"({rule.source} must not import {', '.join(rule.targets)}: {rule.why})"
                )

    for rule in contracts.independent:
        for item in ours:
            if within(item.importer, rule.package) and not within(item.imported, rule.package):
                broken.append(
                    f"{_where(item, root)}: {item.importer} imports {item.imported} "
                    f"({rule.package} imports no other {rule.family} package: {rule.why})"
                )

    for rule in contracts.only_through:
        for item in ours:
            if (
                within(item.importer, rule.source)
                and not within(item.imported, rule.source)
                and item.imported not in rule.modules
                and not any(within(item.imported, package) for package in rule.packages)
            ):
                through = ", ".join([*rule.modules, *(f"{p}.*" for p in rule.packages)])
                broken.append(
                    f"{_where(item, root)}: {item.importer} imports {item.imported} "
                    f"({rule.source} reaches {rule.family} only through {through}: {rule.why})"
                )

    for rule in contracts.acyclic:
        broken.extend(_acyclic(ours, rule, root))
    return broken


def _layer_of(module: str, layers: Iterable[str]) -> str | None:
    best = None
    for layer in layers:
        if within(module, layer) and (best is None or len(layer) > len(best)):
            best = layer
    return best


def _acyclic(ours: list[Import], rule: Acyclic, root: Path) -> list[str]:
    edges: dict[str, set[str]] = {}
    witness: dict[tuple[str, str], Import] = {}
    for item in ours:
        a = _layer_of(item.importer, rule.layers)
        b = _layer_of(item.imported, rule.layers)
        if a and b and a != b:
            edges.setdefault(a, set()).add(b)
            witness.setdefault((a, b), item)
    cycle = _cycle(edges)
    if cycle is None:
        return []
    steps = [f"{a} -> {b} ({_where(witness[(a, b)], root)})" for a, b in itertools.pairwise(cycle)]
    return [f"a package cycle: {'; '.join(steps)} ({rule.why})"]
