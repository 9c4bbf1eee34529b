"""`NodeLoss`: gives up the runs of a node gossip holds dead, once their lease has
surely expired.

That is: no contact from this leader for ``lease_seconds`` plus the stop grace
plus a margin, and this leader has led at least that long (the previous leader
may have renewed the lease just before it fell). Only then is ``NodeLost``
committed and the jobs re-queued (without spending a retry, unless a job's spec
says ``no_requeue``), so a re-placed job never runs beside its old copy: the node's
executor stops runs whose lease lapsed.
"""

from __future__ import annotations

import logging
import time

from murmur.node.control.cluster_view import DOWN_STATES, ClusterView
from murmur.node.control.leader.node_calls import NodeCalls
from murmur.node.control.leader.term import LeaderTerm, now_us
from murmur.node.control.queue.commands import NodeLost
from murmur.node.control.queue.state import ControlState
from murmur.v1 import types_pb2

_log = logging.getLogger("murmur.leader")

LEASE_MARGIN_SECONDS = 5.0
"""Added to the lease and the stop grace before a dead node's runs are given up:
covers clock rate differences and the supervisors' one-second checks."""


class NodeLoss:
    """Commits NodeLost for dead nodes whose runs' lease lapsed (one term).

    Args:
        term: the term that commits.
        control: the replicated state (which nodes hold runs).
        view: the cluster as gossip sees it (which nodes are down).
        calls: this term's calls to nodes (when each last answered).
        lease_seconds: the runs' lease.
        stop_grace_seconds: how long a run whose lease lapsed gets between SIGTERM
            and SIGKILL.
    """

    def __init__(
        self,
        term: LeaderTerm,
        *,
        control: ControlState,
        view: ClusterView,
        calls: NodeCalls,
        lease_seconds: float,
        stop_grace_seconds: float,
    ) -> None:
        self._term = term
        self._control = control
        self._view = view
        self._calls = calls
        self._lease_seconds = lease_seconds
        # A run whose lease lapsed is sent SIGTERM, and SIGKILL only after the grace.
        self._patience = lease_seconds + stop_grace_seconds + LEASE_MARGIN_SECONDS
        self._led_since = time.monotonic()

    async def give_up_dead_nodes(self) -> None:
        """Commit NodeLost for each down node silent for longer than the lease.

        Raises:
            NotLeaderError, ProposalTimeoutError: not committed.
        """
        now = time.monotonic()
        if now - self._led_since < self._patience:
            return
        for node in self._control.nodes_with_runs():
            info = self._view.node(node)
            if info is not None and info.state not in DOWN_STATES:
                continue
            if now - self._calls.contact.get(node, self._led_since) < self._patience:
                continue
            state = "gone" if info is None else types_pb2.NodeState.Name(info.state)[11:].lower()
            await self._term.commit(
                NodeLost(
                    node=node,
                    reason=f"node {node} is {state}; its runs' lease expired "
                    f"({self._lease_seconds:g} s without a leader's word)",
                    at_us=now_us(),
                )
            )
            _log.warning("gave up the runs of %s", node, extra={"event": "leader.node_lost"})
