"""`LeaseRenewals`: while a term lasts, reconcile every node again and again.

Every ``RECONCILE_INTERVAL_SECONDS`` (or a third of the runs' lease, when that is
shorter) each node the log has runs on is reconciled, which also renews its runs'
lease; a node the log has no runs on is reconciled every
``IDLE_RECONCILE_SECONDS`` (a run it should not have is stopped by then). Each
node's reconciliation is a task of the term of its own: a node that does not
answer delays nobody else's renewal, and one whose reconciliation fails (logged
and counted by the term) is asked again at its next turn. After each round the
runs of dead nodes whose lease lapsed are given up.
"""

from __future__ import annotations

import asyncio
import math
import time

from murmur.node.control.leader.node_loss import NodeLoss
from murmur.node.control.leader.reconcile import Reconciler
from murmur.node.control.leader.start_ledger import StartLedger
from murmur.node.control.leader.term import LeaderTerm
from murmur.node.control.queue.state import ControlState

RECONCILE_INTERVAL_SECONDS = 2.0
"""How often the leader compares the log with the runs of every node the log has
runs on; it also renews the runs' lease, so it is at most a third of the lease."""

IDLE_RECONCILE_SECONDS = 10.0
"""How often a node the log has no runs on is compared (a run it should not have is
stopped by then): at 32 nodes, asking all of them every 2 s was a fifth of an idle
leader's work."""


def renew_interval(lease_seconds: float) -> float:
    """Seconds between two rounds: renewals reach every node well within its lease,
    however short."""
    return min(RECONCILE_INTERVAL_SECONDS, lease_seconds / 3)


class LeaseRenewals:
    """The term's reconciliation rounds (see the module doc).

    Args:
        term: the term the rounds belong to; they end with it.
        control: the replicated state (which nodes hold runs).
        reconciler: reconciles one node.
        ledger: what this term did to start each run (pruned every round).
        node_loss: gives up the runs of dead nodes.
        lease_seconds: the runs' lease.
    """

    def __init__(
        self,
        term: LeaderTerm,
        *,
        control: ControlState,
        reconciler: Reconciler,
        ledger: StartLedger,
        node_loss: NodeLoss,
        lease_seconds: float,
    ) -> None:
        self._term = term
        self._control = control
        self._reconciler = reconciler
        self._ledger = ledger
        self._node_loss = node_loss
        self._interval = renew_interval(lease_seconds)

    async def run(self) -> None:
        """Reconcile round after round while the term lasts.

        Raises:
            NotLeaderError, ProposalTimeoutError: a NodeLost was not committed.
        """
        in_flight: dict[str, asyncio.Task[None]] = {}
        asked: dict[str, float] = {}
        """Node → when this loop last asked it for its runs (monotonic)."""
        while self._term.leads():
            await asyncio.sleep(self._interval)
            self._ledger.forget_inactive(self._control)
            now = time.monotonic()
            with_runs = set(self._control.nodes_with_runs())
            for node in sorted(self._reconciler.nodes_to_reconcile()):
                if node not in with_runs and now - asked.get(node, -math.inf) < (
                    IDLE_RECONCILE_SECONDS
                ):
                    continue  # holds none of the log's runs: asked less often
                if node not in in_flight or in_flight[node].done():
                    asked[node] = now
                    in_flight[node] = self._term.start(
                        self._reconciler.reconcile_node(node), what=f"reconciliation of {node}"
                    )
            for node, task in list(in_flight.items()):
                if task.done():
                    del in_flight[node]  # a failure was logged and counted by the term
            await self._node_loss.give_up_dead_nodes()
