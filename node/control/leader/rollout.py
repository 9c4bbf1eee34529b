"""Rolling updates: the leader replaces a service's replicas of an older revision,
or running on a drained node, one at a time, never leaving fewer than N-1 of its N
replicas ready.

``murmur service update`` only raises the service's revision in the log
(``UpdateService``); the replicas keep running the old spec until the leader rolls
them. Readiness is gossip's (each node probes its own replicas), which the log does
not hold, so rolling is a leader duty like placement: on every pass it asks
``next_roll`` (pure, below) what to replace now, and commits a ``RollReplica`` for
it. The entry checks that the revision and the slot's job are still what the leader
saw, so a pass on a stale view, or a second leader's, changes nothing.

A drain moves replicas the same way: a replica never ends by itself, so a drained
node would keep its replicas, and its drain never finish, if the leader did not
replace them on the other nodes (the drained node takes nothing new).

The rule, per service:

1. While a replica of the current revision is not ready, wait: it was just made (or
   it crashed), and replacing another one now could leave fewer than N-1 ready.
   A new revision that never gets ready stalls the update with the other N-1
   replicas still serving the old one: nothing is lost, and ``murmur service
   update`` again (or back) goes on.
2. Else replace an old replica that is not ready first (it serves nothing, so
   replacing it costs no readiness), lowest slot first.
3. Else (every replica ready) replace the old replica of the lowest slot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

from murmur.node.control.cluster_view import ClusterView
from murmur.node.control.leader.term import LeaderTerm, now_us
from murmur.node.control.queue.commands import RollReplica
from murmur.node.control.queue.records import ClusterJob
from murmur.node.control.queue.results import ApplyResult
from murmur.node.control.queue.services import ServiceRecord, outdated
from murmur.node.control.queue.state import ControlState
from murmur.node.errors import UpgradeInProgressError

_log = logging.getLogger(__name__)


def next_roll(
    record: ServiceRecord,
    job_of: Callable[[str], ClusterJob | None],
    ready: Collection[str],
    drained: Collection[str] = (),
) -> int | None:
    """The slot whose replica ``record``'s rolling update (or a drain) replaces now,
    or None (nothing to replace, or not yet: see the module doc).

    Args:
        record: the service as the log holds it.
        job_of: the log's job of an id (None once forgotten).
        ready: the ids of replica jobs whose readiness probe passes.
        drained: the nodes drained in the log.
    """
    old: list[int] = []
    for slot, job_id in enumerate(record.replica_jobs):
        job = job_of(job_id)
        if job is None or job.is_terminal:
            continue  # ending for good (its service's delete or scale): nothing to roll
        if outdated(record, job, drained):
            old.append(slot)
        elif job_id not in ready:
            return None
    if not old:
        return None
    not_ready = [slot for slot in old if record.replica_jobs[slot] not in ready]
    return (not_ready or old)[0]


class ServiceRollout:
    """The leader's rolling updates for one term (see the module doc)."""

    def __init__(self, term: LeaderTerm, *, control: ControlState, view: ClusterView) -> None:
        self._term = term
        self._control = control
        self._view = view

    async def roll(self) -> None:
        """Replace at most one replica per service that has older ones."""
        drained = self._control.drained_nodes()
        job_of = self._control.job
        rolling: Sequence[ServiceRecord] = [
            record
            for record in self._control.services()
            if any(
                (job := job_of(job_id)) is not None
                and not job.is_terminal
                and outdated(record, job, drained)
                for job_id in record.replica_jobs
            )
        ]
        if not rolling:
            # The usual pass (every half second): no gossip read to describe every node.
            return
        ready = {
            job_id for job_id, endpoint in self._view.replica_endpoints().items() if endpoint.ready
        }
        for record in rolling:
            slot = next_roll(record, job_of, ready, drained)
            if slot is None or not self._term.leads():
                continue
            command = RollReplica(
                record.name, slot, record.revision, record.replica_jobs[slot], now_us()
            )
            try:
                result = await self._term.commit(command)
            except UpgradeInProgressError as exc:
                # A node of an older murmur that knows no RollReplica is back (or new):
                # replicas wait where they are until it is upgraded (protocol.py).
                _log.debug("roll of %s slot %d waits: %s", record.name, slot, exc)
                return
            if isinstance(result, ApplyResult) and not result.ok:
                _log.debug("roll of %s slot %d refused: %s", record.name, slot, result.message)
            else:
                _log.info(
                    "service %s: replica %d rolled to revision %d",
                    record.name, slot, record.revision,
                    extra={"event": "service.roll", "service": record.name, "slot": slot},
                )  # fmt: skip
