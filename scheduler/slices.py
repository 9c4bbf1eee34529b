"""Computations done in slices: generators that yield between slices of work and
return their result, so a caller with other work (the leader's event loop) can
interleave it; ``finish`` runs one straight through."""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

T = TypeVar("T")

Slices = Generator[None, None, T]
"""A computation in slices: yields between slices, returns its result."""


def finish(steps: Slices[T]) -> T:
    """Runs ``steps`` to its end; returns its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result
