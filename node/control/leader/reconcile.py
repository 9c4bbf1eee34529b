"""`Reconciler`: compares each node's own record of its runs with the log, and
settles what differs.

A node's record (``NodeService.ListRuns``, which also renews its runs' lease) may
know more than the log, or less:

- a run that changed state while no leader listened (it ended, say): the node's
  word is committed;
- a run the log no longer wants there (a copy re-placed elsewhere, a job the log
  does not know) is stopped, and a run of a cancelled job is stopped now;
- a run the node does not have never arrived, or is on its way: it is sent again
  (a node starts a run id at most once); when its job was cancelled meanwhile, it
  is taken back and the job ends at once;
- a run still scheduled or starting ``start_timeout`` after this leader first saw
  it is given up: its node is asked to stop it and records it lost, and one the
  node never had is committed lost here, once no call that could still start it is
  in flight. Its job retries as its policy says: a retry is spent, unlike for a run
  lost with its node (node/control/queue/state.py), because this node is alive and
  answering, and whether it or the job kept the run from starting (an image that
  never pulls, say) the leader cannot tell; a free requeue could offer the job to it
  forever. Each such recovery is logged with the run's id.

A gang's ranks are settled each on its own node, as runs of their own: a rank the
node reports ended ends that rank (node/control/queue/state.py stops the others),
and the stop of a gang whose run is ending reaches every rank still running.
"""

from __future__ import annotations

import asyncio
import logging

from murmur.node.control.cluster_view import DOWN_STATES, ClusterView
from murmur.node.control.leader.dispatch import RunDispatch
from murmur.node.control.leader.node_calls import NodeCalls
from murmur.node.control.leader.start_ledger import StartLedger, rank_key
from murmur.node.control.leader.term import LeaderTerm, now_us
from murmur.node.control.queue.commands import ReportRun, RevokeAssignment, report_of
from murmur.node.control.queue.records import Assignment, ClusterJob
from murmur.node.control.queue.state import ControlState
from murmur.node.jobspec import states
from murmur.v1 import types_pb2

_log = logging.getLogger("murmur.leader")


def _run_state(run: types_pb2.Run) -> str:
    return states.from_proto(run.state)


def _known_state(job: ClusterJob, rank: Assignment) -> str:
    """The state the log holds for ``rank``: the job's, for a single-node run; for a
    gang's rank, running once its node said so, else as far as the job got (a rank
    the log holds scheduled while its node says starting is not worth an entry)."""
    if not job.is_gang:
        return job.state
    if rank.started_at_us:
        return states.RUNNING
    return states.STARTING if job.state != states.SCHEDULED else states.SCHEDULED


class Reconciler:
    """Settles the differences between the log and the nodes' runs, in one term.

    Args:
        term: the term that commits what the nodes know.
        control: the replicated state (the log, applied).
        view: the cluster as gossip sees it.
        calls: this term's calls to nodes.
        ledger: what this term did to start each run.
        dispatch: sends a run its node does not have again.
    """

    def __init__(
        self,
        term: LeaderTerm,
        *,
        control: ControlState,
        view: ClusterView,
        calls: NodeCalls,
        ledger: StartLedger,
        dispatch: RunDispatch,
    ) -> None:
        self._term = term
        self._control = control
        self._view = view
        self._calls = calls
        self._ledger = ledger
        self._dispatch = dispatch

    def nodes_to_reconcile(self) -> set[str]:
        """Every node gossip holds up, and every node the log has runs on."""
        nodes = {info.name for info in self._view.nodes() if info.state not in DOWN_STATES}
        return nodes | set(self._control.nodes_with_runs())

    async def reconcile_all(self) -> None:
        """Compare every reachable node's runs with the log and settle differences
        (a new leader does this once, whole, before it places anything)."""
        nodes = sorted(self.nodes_to_reconcile())
        reports = await asyncio.gather(*(self._calls.list_runs(node) for node in nodes))
        for node, runs in zip(nodes, reports, strict=True):
            if runs is not None and self._term.leads():
                await self.settle(node, runs)

    async def reconcile_node(self, node: str) -> None:
        """Ask ``node`` for its runs and settle them (also renews their lease)."""
        runs = await self._calls.list_runs(node)
        if runs is not None and self._term.leads():
            await self.settle(node, runs)

    async def settle(self, node: str, runs: list[types_pb2.Run]) -> None:
        """Settle the log's runs on ``node`` against the node's own record ``runs``.

        Raises:
            NotLeaderError, ProposalTimeoutError: a correction was not committed.
        """
        by_id = {run.id: run for run in runs}
        for job in self._control.active_on(node):
            rank = job.rank_on(node)
            assert rank is not None
            run = by_id.get(rank.run_id)
            if run is None:
                await self._settle_missing(job, rank)
                continue
            seen = _run_state(run)
            if seen != _known_state(job, rank) and seen != states.PENDING:
                await self._term.commit(report_of(job.id, node, run))
            elif job.stopping and seen in (states.STARTING, states.RUNNING):
                await self._calls.stop_run(node, run.id, job.stop_reason)
            elif seen in (states.STARTING, states.PENDING) and self._ledger.overdue(job):
                await self._give_up_started(node, job, run)
        for run in runs:
            if _run_state(run) not in (states.STARTING, states.RUNNING):
                continue
            owner = self._control.job(run.job_id)
            current = owner.rank_on(node) if owner is not None else None
            if current is None or current.run_id != run.id:
                await self._calls.stop_run(
                    node, run.id, "stale: the cluster placed this job elsewhere"
                )

    async def _give_up_started(self, node: str, job: ClusterJob, run: types_pb2.Run) -> None:
        """The node has the run, but it did not start in time: stopped as lost, again
        at each reconciliation until its node records the end (the stop waits out a
        start in progress)."""
        timeout = self._ledger.start_timeout
        if self._ledger.give_up((run.id, node)):
            _log.warning(
                "run %s of job %s did not start on %s within %g s; giving it up",
                run.id, job.id, node, timeout,
                extra={"event": "leader.run_overdue", "run": run.id, "job": job.id},
            )  # fmt: skip
        reason = f"lost: did not start on {node} within {timeout:g} s"
        await self._calls.stop_run(node, run.id, reason, lost=True)

    async def _settle_missing(self, job: ClusterJob, rank: Assignment) -> None:
        """The node of ``rank`` (the job's run, or one rank of a gang's) does not
        have it: it never arrived, or is on its way.

        A cancelled job is taken back and ends at once (a copy that still lands is
        stopped as stale by the next reconciliation, and nothing is placed again); a
        gang's rank that never arrived while the gang stops ends as stopped. A run
        overdue is given up once no StartRun that could still start it is in
        flight. Any other is sent again: the node starts a run id at most once.
        """
        run_id, node = rank.run_id, rank.node
        key = rank_key(rank)
        if job.is_gang and job.stopping:
            if self._ledger.give_up(key):
                await self._term.commit(
                    ReportRun(
                        job_id=job.id, run_id=run_id, node=node, state=states.CANCELLED,
                        exit_code=None, reason=f"stopped before {node} started it",
                        at_us=now_us(),
                    )
                )  # fmt: skip
            return
        if job.cancel_requested and job.state == states.SCHEDULED:
            if self._ledger.give_up(key):
                _log.info(
                    "run %s of cancelled job %s never reached %s: ending the job",
                    run_id, job.id, node,
                    extra={"event": "leader.cancel_unstarted", "run": run_id, "job": job.id},
                )  # fmt: skip
                await self._term.commit(
                    RevokeAssignment(
                        job_id=job.id, run_id=run_id, at_us=now_us(),
                        reason=f"cancelled before {node} started it",
                    )
                )  # fmt: skip
            return
        timeout = self._ledger.start_timeout
        if not self._ledger.overdue(job):
            if not self._ledger.given_up(key):
                if self._ledger.was_sent(key):
                    _log.info(
                        "run %s of job %s is not on %s: sending it again", run_id, job.id, node,
                        extra={"event": "leader.run_redriven", "run": run_id, "job": job.id},
                    )  # fmt: skip
                self._dispatch.send(job, node=node)
            return
        if self._ledger.give_up(key):  # send it no more; give it up once none is in flight
            _log.warning(
                "run %s of job %s never started on %s within %g s; giving it up",
                run_id, job.id, node, timeout,
                extra={"event": "leader.run_overdue", "run": run_id, "job": job.id},
            )  # fmt: skip
        if self._ledger.sent_within(key, 2 * self._calls.timeout):
            return  # a StartRun may still be on its way there
        await self._term.commit(
            ReportRun(
                job_id=job.id, run_id=run_id, node=node, state=states.LOST, exit_code=None,
                reason=f"lost: {node} never started it within {timeout:g} s",
                at_us=now_us(),
            )
        )  # fmt: skip
