"""The `:` command line: which view a command names, k9s style, prefixes allowed."""

from __future__ import annotations

from dataclasses import dataclass

VIEWS: dict[str, tuple[str, ...]] = {
    "cluster": ("cluster", "nodes", "no"),
    "node": ("node",),
    "jobs": ("jobs", "j"),
    "job": ("job",),
    "datasets": ("datasets", "ds"),
    "services": ("services", "svc"),
    "help": ("help", "?"),
    "quit": ("quit", "q", "q!"),
}
"""View name → the words that reach it (the first is the canonical one)."""

NEEDS_ARGUMENT = frozenset({"node", "job"})


class CommandError(ValueError):
    """The command line names no view, or misses its argument; the message says so."""


@dataclass(frozen=True)
class Command:
    view: str
    argument: str = ""


def parse_command(text: str) -> Command:
    """`jobs` → Command("jobs"); `node gpu-3` → Command("node", "gpu-3"); `d` → datasets."""
    word, _, argument = text.strip().partition(" ")
    word, argument = word.lower(), argument.strip()
    if not word:
        raise CommandError(
            "type a view: cluster, node NAME, jobs, job ID, datasets, services, help, quit"
        )
    exact = [view for view, words in VIEWS.items() if word in words]
    matches = exact or [
        view for view, words in VIEWS.items() if any(w.startswith(word) for w in words)
    ]
    if argument:
        # `:node x` and `:nodes` share a prefix; an argument means the detail view.
        matches = [view for view in matches if view in NEEDS_ARGUMENT] or matches
    else:
        matches = [view for view in matches if view not in NEEDS_ARGUMENT] or matches
    if len(matches) != 1:
        options = ", ".join(sorted(matches)) or "none"
        raise CommandError(
            f"`{word}` matches {options}; try cluster, jobs, datasets, services, help"
        )
    view = matches[0]
    if view in NEEDS_ARGUMENT and not argument:
        raise CommandError(f"`{view}` needs a {'name' if view == 'node' else 'job id'}")
    return Command(view, argument)
