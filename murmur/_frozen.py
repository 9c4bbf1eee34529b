"""Whether this is the frozen build, and how one process of ours starts another.

In a checkout or a virtualenv, the helpers the daemon starts (the fork server, a
run's supervisor, a container's lease guard) and the nodes of ``murmur up`` are
``python -m MODULE``. The frozen build (PyInstaller, ``make dist``) has no ``python``
to run: its one executable holds the interpreter and our code, and nothing else on
the host may be assumed. So it runs itself, with a hidden first argument that names
the helper (:data:`RUN_HELPER`), and :func:`run_helper` calls that module's ``main``.
This module is the one place that asks ``sys.frozen``; every spawn site builds its
command line here, so the frozen build and the venv differ in this file alone.

Standard library only, and cheap to import: the supervisors and the CLI's quick
answers import it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

RUN_HELPER = "__run-helper"
"""The hidden first argument: ``murmur __run-helper MODULE ARGS...``. Not a command
(argparse never sees it, ``--help`` does not list it)."""

HELPER_MODULES = frozenset(
    {
        "murmur.node.agent.runtimes.forkserver",
        "murmur.node.agent.runtimes.supervisor",
        "murmur.node.agent.runtimes.lease_guard",
    }
)
"""The modules :func:`run_helper` runs: our helpers, and nothing a stray argument
could name."""


def is_frozen() -> bool:
    """Whether this process is the frozen build (PyInstaller sets ``sys.frozen``)."""
    return bool(getattr(sys, "frozen", False))


def helper_command(
    module: str, args: Sequence[str], *, python: str, flags: Sequence[str] = ()
) -> list[str]:
    """The command line that runs helper ``module`` with ``args``.

    Args:
        python: the interpreter to use when not frozen (the frozen build runs itself).
        flags: interpreter flags (``-S``, ``-P``); the frozen build has no use for them.
    """
    if module not in HELPER_MODULES:
        raise ValueError(f"not a helper module: {module}")
    if is_frozen():
        return [sys.executable, RUN_HELPER, module, *args]
    return [python, *flags, "-m", module, *args]


def murmur_command() -> list[str]:
    """The command line that runs the ``murmur`` CLI itself (what ``murmur up`` starts
    its nodes with): this interpreter with ``-m murmur``, or the frozen executable."""
    if is_frozen():
        return [sys.executable]
    return [sys.executable, "-m", "murmur"]


def run_helper(argv: Sequence[str]) -> int:
    """Runs ``argv[0]``'s ``main(argv[1:])``: the frozen build's way of being a helper.

    Returns:
        The helper's exit code; 2 for a module that is not a helper.
    """
    if not argv or argv[0] not in HELPER_MODULES:
        print(f"murmur: {RUN_HELPER} needs one of: {', '.join(sorted(HELPER_MODULES))}",
              file=sys.stderr)  # fmt: skip
        return 2
    module = importlib.import_module(argv[0])  # by name: the helpers import the daemon's rooms
    code = module.main(list(argv[1:]))
    return int(code or 0)
