"""`LeaderDuties`: while this node leads, turn the replicated queue into runs.

A new leader first waits until it has applied every entry of earlier terms (its
state is then complete). Then, for that term, it wires a fresh set of duties
(nothing a previous term learned is trusted: another leader may have changed
anything meanwhile) and:

1. reconciles once, whole (node/control/leader/reconcile.py): it asks every node
   for its own record of its runs and commits what the nodes know that the log
   does not, stops runs the log no longer wants, and re-sends assignments a node
   never received. Only then does it place anything;
2. places, pass after pass (node/control/leader/placing.py), handing each
   committed assignment to its node (node/control/leader/dispatch.py); after a
   pass it lets submissions gather for a few times what the pass cost, unless a
   run ends meanwhile;
3. beside that, reconciles each node again and again, which renews the runs'
   lease, and gives up the runs of dead nodes once their lease lapsed
   (node/control/leader/renewals.py, node/control/leader/node_loss.py);
4. delivers a cancel committed for a running job at once, rather than at the
   next reconciliation;
5. after each placement pass, replaces a replica of each service being updated
   when readiness allows (node/control/leader/rollout.py).

Everything the term starts is a task of the term (node/control/leader/term.py):
when this node is deposed, or stops, the term's tasks are cancelled and awaited
before the next term's duties begin, and a task that fails is logged with its
traceback and counted (``LeaderDuties.stats``).

Every call to a node carries this leader's term; a node that has seen a newer one
refuses, and this leader soon learns it was deposed through Raft.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from murmur import scheduler
from murmur.node.control.cluster_view import ClusterView
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.leader.dispatch import RunDispatch
from murmur.node.control.leader.node_calls import NodeCalls, NodeStubs
from murmur.node.control.leader.node_loss import NodeLoss
from murmur.node.control.leader.placing import JobPlacer
from murmur.node.control.leader.reconcile import Reconciler
from murmur.node.control.leader.renewals import LeaseRenewals
from murmur.node.control.leader.rollout import ServiceRollout
from murmur.node.control.leader.start_ledger import StartLedger
from murmur.node.control.leader.stats import LeaderStats
from murmur.node.control.leader.term import TERM_ENDED, LeaderTerm
from murmur.node.control.queue.cluster_jobs import ClusterJobs
from murmur.node.control.queue.records import ClusterJob
from murmur.node.control.queue.results import ApplyResult
from murmur.node.control.queue.state import ControlState
from murmur.node.jobspec import states

_log = logging.getLogger("murmur.leader")

GATHER_PASS_COSTS = 8.0
GATHER_MAX_SECONDS = 0.5
"""After a placement pass the leader waits this many times the plan's cost, at most
``GATHER_MAX_SECONDS``, before the next, unless a run ends meanwhile: a burst of
submissions to a long queue is placed in a few passes, while on a short queue (a
plan of a few jobs costs well under a millisecond) the wait is a few ms."""

DEFAULT_START_TIMEOUT_SECONDS = 600.0
"""How long a run may stay scheduled or starting (an image pull included) before the
leader gives it up (node config ``run_start_timeout_seconds``)."""

IDLE_WAKE_SECONDS = 0.5
"""A placement pass runs at least this often while leading (backoffs end, nodes
change)."""

FAILED_TERM_PAUSE_SECONDS = 1.0
"""After the duties of a term failed, they start over after this pause."""


@dataclass(frozen=True, slots=True)
class TermDuties:
    """The duties of one term, wired together (a new set each term)."""

    term: LeaderTerm
    calls: NodeCalls
    ledger: StartLedger
    dispatch: RunDispatch
    reconciler: Reconciler
    placer: JobPlacer
    renewals: LeaseRenewals
    rollout: ServiceRollout


class LeaderDuties:
    """Runs the duties of every term this node leads (see the module doc).

    Args:
        consensus: this node's Raft.
        control: the replicated state.
        jobs: the cluster's jobs (tells watchers of waiting jobs).
        view: the cluster as gossip sees it.
        peers: the NodeService stubs by address (this node's own included).
        lease_seconds: the runs' lease.
        local_address: where this node's own NodeService is reached.
        stop_grace_seconds: how long a run whose lease lapsed gets between SIGTERM
            and SIGKILL.
        start_timeout_seconds: how long a run may stay scheduled or starting.
        policy: the scheduling policy placement follows.
    """

    def __init__(
        self,
        *,
        consensus: ConsensusRunner,
        control: ControlState,
        jobs: ClusterJobs,
        view: ClusterView,
        peers: NodeStubs,
        lease_seconds: float,
        local_address: str,
        stop_grace_seconds: float = 10.0,
        start_timeout_seconds: float = DEFAULT_START_TIMEOUT_SECONDS,
        policy: scheduler.Policy = scheduler.DEFAULT_POLICY,
    ) -> None:
        self._consensus = consensus
        self._control = control
        self._jobs = jobs
        self._view = view
        self._peers = peers
        self._lease_seconds = lease_seconds
        self._local_address = local_address
        self._stop_grace_seconds = stop_grace_seconds
        self._start_timeout = start_timeout_seconds
        self._policy = policy
        self._stats = LeaderStats()
        self._current: TermDuties | None = None
        """The duties of the term being led; ``None`` between terms."""
        self._wake = asyncio.Event()
        self._freed = asyncio.Event()
        """Set when an applied entry ended a run: resources came free."""

    @property
    def stats(self) -> LeaderStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats)

    def waiting(self) -> Mapping[str, tuple[str, int]]:
        """Job id → (why it waits, queue position), from the last placement pass."""
        current = self._current
        return current.placer.waiting() if current is not None else {}

    def wake(self) -> None:
        self._wake.set()

    def wire(self, term: LeaderTerm) -> TermDuties:
        """The duties of ``term``, wired together."""
        calls = NodeCalls(
            term.number,
            leader=self._consensus.name,
            local_address=self._local_address,
            view=self._view,
            peers=self._peers,
            lease_seconds=self._lease_seconds,
            stats=self._stats,
        )
        ledger = StartLedger(self._start_timeout)
        dispatch = RunDispatch(term, calls=calls, ledger=ledger, lease_seconds=self._lease_seconds)
        reconciler = Reconciler(
            term,
            control=self._control,
            view=self._view,
            calls=calls,
            ledger=ledger,
            dispatch=dispatch,
        )
        node_loss = NodeLoss(
            term,
            control=self._control,
            view=self._view,
            calls=calls,
            lease_seconds=self._lease_seconds,
            stop_grace_seconds=self._stop_grace_seconds,
        )
        return TermDuties(
            term=term,
            calls=calls,
            ledger=ledger,
            dispatch=dispatch,
            reconciler=reconciler,
            placer=JobPlacer(
                term,
                control=self._control,
                jobs=self._jobs,
                view=self._view,
                calls=calls,
                dispatch=dispatch,
                policy=self._policy,
            ),
            renewals=LeaseRenewals(
                term,
                control=self._control,
                reconciler=reconciler,
                ledger=ledger,
                node_loss=node_loss,
                lease_seconds=self._lease_seconds,
            ),
            rollout=ServiceRollout(term, control=self._control, view=self._view),
        )

    # --- the loop -------------------------------------------------------------------

    async def run(self) -> None:
        """Lead every term this node wins, until cancelled."""
        while True:
            if not self._consensus.state_is_current():
                await self._consensus.applied_signal().wait()
                continue
            number = self._consensus.raft.term
            try:
                await self._lead(number)
            except TERM_ENDED as exc:
                _log.info("stopped leading in term %d: %s", number, exc)
            except Exception:
                # A bug here must not take the node down with it: Raft and the runs
                # go on, and the duties start over after a pause.
                self._stats.terms_failed += 1
                _log.exception(
                    "leader duties failed in term %d; starting over",
                    number,
                    extra={
                        "event": "leader.term_failed",
                        "term": number,
                        "failures": self._stats.terms_failed,
                    },
                )
                await asyncio.sleep(FAILED_TERM_PAUSE_SECONDS)

    async def _lead(self, number: int) -> None:
        _log.info("leading", extra={"event": "leader.start", "term": number})
        self._stats.terms_led += 1
        async with LeaderTerm(number, consensus=self._consensus, stats=self._stats) as term:
            duties = self.wire(term)
            self._current = duties
            try:
                await duties.reconciler.reconcile_all()
                async with term.alongside(duties.renewals.run()) as renewals:
                    await self._keep_placing(duties, renewals)
            finally:
                self._current = None  # nothing more starts in this term

    async def _keep_placing(self, duties: TermDuties, renewals: asyncio.Task[None]) -> None:
        while duties.term.leads() and not renewals.done():
            self._freed.clear()
            cost = await duties.placer.place()
            await duties.rollout.roll()
            # A plan costs in proportion to the queue: after one, let submissions
            # gather for a few times its cost rather than plan again for each, so
            # planning takes a small share of the event loop; a run that ended (its
            # resources are free now) cuts the wait short.
            pause = min(GATHER_MAX_SECONDS, GATHER_PASS_COSTS * cost)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), pause)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_WAKE_SECONDS):
                    await _any_set(self._wake, self._consensus.applied_signal())

    # --- applied entries ------------------------------------------------------------

    def applied(self, result: object) -> None:
        """Every applied command's result: a cancel of a running job is sent to its
        node at once, rather than at the next reconciliation. Only the leader acts:
        every voter applies every entry, and a follower has nothing to do here."""
        if not isinstance(result, ApplyResult) or not self._consensus.is_leader:
            return
        if any(_ended_a_run(changed) for changed in result.changed):
            self._freed.set()
        if result.job is None:
            return
        job = result.job
        current = self._current
        if job.stopping and job.is_active and current is not None:
            # Between terms nothing is started: the next term's first reconciliation
            # delivers the cancel.
            current.term.start(
                self._stop_cancelled(current, job), what=f"stop of cancelled job {job.id}"
            )

    async def _stop_cancelled(self, duties: TermDuties, job: ClusterJob) -> None:
        """A cancel (or a gang's stop) was committed for a running job: tell the
        nodes of its live ranks now rather than at the next reconciliation. A run
        still scheduled may never have reached its node: the node's runs are
        compared at once, so such a job ends now."""
        if not self._consensus.is_leader:
            return
        for rank in job.live_runs:
            await duties.calls.stop_run(rank.node, rank.run_id, job.stop_reason)
            if job.state == states.SCHEDULED and duties.term.leads():
                await duties.reconciler.reconcile_node(rank.node)


async def _any_set(*events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set; the other waits end with it."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def _ended_a_run(job: ClusterJob) -> bool:
    """Whether ``job`` just gave back what a run held (it is neither running nor a
    fresh submission)."""
    return not job.is_active and not (job.state == states.PENDING and job.attempts == 0)
