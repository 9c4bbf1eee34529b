"""How quantities read in the reasons users see: GiB, CPU counts, GPU phrases.

One place for number formatting, so every reason says "64 GiB" and "1 free A100 GPU"
the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

GIB = 2**30
LIST_LIMIT = 3
"""Reasons name at most this many nodes, then say how many more there are."""


def format_gib(size_bytes: int) -> str:
    """Bytes as GiB: ``"64 GiB"``, ``"1.5 GiB"``, ``"<0.1 GiB"`` for a sliver."""
    gib = size_bytes / GIB
    if gib == int(gib):
        return f"{int(gib)} GiB"
    if gib < 0.05:
        return "<0.1 GiB"
    return f"{gib:.1f} GiB"


def format_amount(amount: float) -> str:
    """A count without trailing zeros: ``"16"``, ``"0.5"``, ``"0.33"``."""
    return str(int(amount)) if amount == int(amount) else f"{amount:.2f}".rstrip("0").rstrip(".")


def format_cpus(cpus: float, *, adjective: str = "") -> str:
    """A CPU amount with its noun: ``"1 CPU"``, ``"16 free CPUs"``, ``"0.5 CPUs"``."""
    number = format_amount(cpus)
    noun = "CPU" if cpus == 1 else "CPUs"
    return f"{number} {adjective} {noun}" if adjective else f"{number} {noun}"


def gpu_phrase(count: int, model: str = "", *, adjective: str = "") -> str:
    """``"1 free A100 GPU"``, ``"4 GPUs"``: count, optional adjective and model, noun."""
    words = [str(count)]
    if adjective:
        words.append(adjective)
    if model:
        words.append(model)
    words.append("GPU" if count == 1 else "GPUs")
    return " ".join(words)


def join_names(names: Sequence[str], *, limit: int = LIST_LIMIT) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``, ``"a, b, c and 4 more"``."""
    if len(names) > limit:
        return f"{', '.join(names[:limit])} and {len(names) - limit} more"
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} and {names[-1]}"


def datasets_phrase(datasets: Sequence[str]) -> str:
    """``"dataset imagenet"`` or ``"datasets coco and imagenet"``."""
    noun = "dataset" if len(datasets) == 1 else "datasets"
    return f"{noun} {join_names(datasets, limit=len(datasets))}"
