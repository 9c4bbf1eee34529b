"""`LeaderStats`: what went wrong while this node led, counted.

A failure the duties survive (they log it with its traceback and go on) would
otherwise leave no trace but a log line: the counters say how often, for status
displays, logs and tests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class LeaderStats:
    """Counters since the duties were made, over every term they led."""

    terms_led: int = 0
    terms_failed: int = 0
    """Terms whose duties raised (a bug): logged with the traceback, then started over."""
    tasks_failed: int = 0
    """Tasks of a term that raised (a StartRun on its way, one node's reconciliation,
    a cancel delivered at once): logged with the traceback; the next reconciliation
    does what they did not."""
    node_calls_failed: int = 0
    """Calls to nodes (ListRuns, StartRun, StopRun) that failed: the node was down,
    slow or refused; reconciliation asks again."""
