"""`LeaderDuties`: while this node leads, turn the replicated queue into runs.

A new leader first waits until it has applied every entry of earlier terms (its
state is then complete), then reconciles: it asks every node for its own record of
its runs (``NodeService.ListRuns``) and commits what the nodes know that the log
does not (a run that ended while no leader listened), stops runs the log no
longer wants (a copy re-placed elsewhere, a cancelled job), and re-sends
assignments a node never received. Only then does it place anything. After that,
one loop:

- places the due pending jobs with the pure placement step (node/control), over
  offers built from gossip, and commits one AssignJob per placement; once
  committed, the assignment goes to its node (``NodeService.StartRun``) stamped
  with (term, sequence);
- reconciles again every ``RECONCILE_INTERVAL_SECONDS``, which also renews the
  runs' lease on every node it reaches;
- sees that every run reaches an end: a run its node does not have is sent again
  (idempotently: a node starts a run id at most once), or, when its job was
  cancelled meanwhile, taken back and its job ended at once; a run still
  scheduled or starting ``start_timeout_seconds`` after this leader first saw it
  is given up: its node is asked to stop it and records it lost (one it never had
  is committed lost here, once no call that could still start it is in flight),
  and its job retries as its policy says. Each such recovery is logged with the
  run's id;
- gives up the runs of a node gossip holds dead, once their lease has surely
  expired: no contact from this leader for ``lease_seconds`` plus a margin, and
  this leader has led at least that long (the previous leader may have renewed
  the lease just before it fell). Only then is NodeLost committed and the jobs
  re-queued (retries permitting), so a re-placed job never runs beside its old
  copy: the node's executor stops runs whose lease lapsed.

Every call to a node carries this leader's term; a node that has seen a newer one
refuses, and this leader soon learns it was deposed through Raft.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace

import grpc
import grpc.aio

from murmur.node.api.services.runs import NodeStubs
from murmur.node.control.cluster_view import DOWN_STATES, ClusterView
from murmur.node.control.consensus.errors import NotLeaderError, ProposalTimeoutError
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.leader.offers import offer_of
from murmur.node.control.leader.placement import ClusterPlan, waiting_reasons
from murmur.node.control.leader.planner import QueuePlanner
from murmur.node.control.queue.cluster_jobs import ClusterJobs
from murmur.node.control.queue.commands import (
    Command,
    NodeLost,
    ReportRun,
    RevokeAssignment,
    encode,
    report_of,
)
from murmur.node.control.queue.records import ACTIVE_STATES, ClusterJob
from murmur.node.control.queue.results import ApplyResult
from murmur.node.control.queue.state import ControlState
from murmur.node.jobspec import states
from murmur.node.membership.transport import SendOutcome, classify_error
from murmur.v1 import node_pb2, types_pb2

_log = logging.getLogger("murmur.leader")

RECONCILE_INTERVAL_SECONDS = 2.0
"""How often the leader compares the log with the runs of every node the log has
runs on; it also renews the runs' lease, so it is at most a third of the lease."""

IDLE_RECONCILE_SECONDS = 10.0
"""How often a node the log has no runs on is compared (a run it should not have is
stopped by then): at 32 nodes, asking all of them every 2 s was a fifth of an idle
leader's work."""

CALL_TIMEOUT_SECONDS = 3.0
"""Deadline of a call to a node (at most a third of the lease)."""

LEASE_MARGIN_SECONDS = 5.0
"""Added to the lease and the stop grace before a dead node's runs are given up:
covers clock rate differences and the supervisors' one-second checks."""

GATHER_PASS_COSTS = 8.0
GATHER_MAX_SECONDS = 0.5
"""After a placement pass the leader waits this many times the plan's cost, at most
``GATHER_MAX_SECONDS``, before the next, unless a run ends meanwhile: a burst of
submissions to a long queue is placed in a few passes, while on a short queue (a
plan of a few jobs costs well under a millisecond) the wait is a few ms."""

PLAN_BURST_SECONDS = 0.002
PLAN_BREATHER_SECONDS = 0.001
"""A plan runs in bursts of about ``PLAN_BURST_SECONDS`` of slices, with a pause of
``PLAN_BREATHER_SECONDS`` after each in which requests go on: a call that needs a
few turns of the event loop is not held up a burst per turn."""

DEFAULT_START_TIMEOUT_SECONDS = 600.0
"""How long a run may stay scheduled or starting (an image pull included) before the
leader gives it up (node config ``run_start_timeout_seconds``)."""

IDLE_WAKE_SECONDS = 0.5
"""A placement pass runs at least this often while leading (backoffs end, nodes
change)."""


_UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def now_us() -> int:
    return time.time_ns() // 1000


def _run_state(run: types_pb2.Run) -> str:
    return states.from_proto(run.state)


class LeaderDuties:
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
    ) -> None:
        self._consensus = consensus
        self._control = control
        self._jobs = jobs
        self._view = view
        self._peers = peers
        self._lease_seconds = lease_seconds
        self._stop_grace_seconds = stop_grace_seconds
        self._start_timeout = start_timeout_seconds
        # Renewals must reach every node well within its lease, however short.
        self._renew_interval = min(RECONCILE_INTERVAL_SECONDS, lease_seconds / 3)
        self._call_timeout = min(CALL_TIMEOUT_SECONDS, lease_seconds / 3)
        self._local_address = local_address
        self._waiting: dict[str, tuple[str, int]] = {}
        self._planner = QueuePlanner()
        self._planned: ClusterPlan | None = None
        """The plan ``_waiting`` comes from."""
        self._led_since = 0.0
        self._contact: dict[str, float] = {}
        """Node → when this leader last heard its runs (monotonic)."""
        self._start_attempts: dict[str, int] = {}
        """StartRun calls made per run id in this term: only a run whose one and only
        call was refused may be taken back."""
        self._revoking: set[str] = set()
        """Run ids being taken back or given up: never sent again."""
        self._unstarted_since: dict[str, float] = {}
        """Run id → when this leader first saw its job scheduled or starting (monotonic):
        the start of the run's ``start_timeout_seconds``."""
        self._last_start_sent: dict[str, float] = {}
        """Run id → when this leader last sent its StartRun (monotonic)."""
        self._unreachable: set[str] = set()
        """Nodes whose last call from this leader failed: offered nothing until one
        succeeds (gossip may still hold a node alive that just died)."""
        self._wake = asyncio.Event()
        self._freed = asyncio.Event()
        """Set when an applied entry ended a run: resources came free."""

    def waiting(self) -> Mapping[str, tuple[str, int]]:
        """Job id → (why it waits, queue position), from the last placement pass."""
        return self._waiting

    def wake(self) -> None:
        self._wake.set()

    # --- the loop -------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            if not self._consensus.state_is_current():
                await self._consensus.applied_signal().wait()
                continue
            term = self._consensus.raft.term
            try:
                await self._lead(term)
            except (NotLeaderError, ProposalTimeoutError) as exc:
                _log.info("stopped leading in term %d: %s", term, exc)
            except Exception:
                # A bug here must not take the node down with it: Raft and the runs
                # go on, and the duties start over after a pause.
                _log.exception("leader duties failed in term %d; starting over", term)
                await asyncio.sleep(1.0)
            self._waiting = {}
            self._planned = None

    async def _lead(self, term: int) -> None:
        _log.info("leading", extra={"event": "leader.start", "term": term})
        self._led_since = time.monotonic()
        self._contact.clear()
        self._unreachable.clear()
        self._start_attempts.clear()
        self._revoking.clear()
        self._unstarted_since.clear()
        self._last_start_sent.clear()
        self._planner.forget()  # another leader may have changed anything meanwhile
        await self._reconcile(term)
        renewals = asyncio.create_task(self._keep_reconciling(term))
        try:
            await self._keep_placing(term, renewals)
        finally:
            renewals.cancel()
            with contextlib.suppress(asyncio.CancelledError, NotLeaderError, ProposalTimeoutError):
                await renewals

    async def _keep_placing(self, term: int, renewals: asyncio.Task[None]) -> None:
        while self._leads(term) and not renewals.done():
            self._freed.clear()
            cost = await self._place(term)
            # A plan costs in proportion to the queue: after one, let submissions
            # gather for a few times its cost rather than plan again for each, so
            # planning takes a small share of the event loop; a run that ended (its
            # resources are free now) cuts the wait short.
            pause = min(GATHER_MAX_SECONDS, GATHER_PASS_COSTS * cost)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), pause)
            self._wake.clear()
            signal = self._consensus.applied_signal()
            waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(signal.wait())]
            try:
                await asyncio.wait(waits, timeout=IDLE_WAKE_SECONDS, return_when="FIRST_COMPLETED")
            finally:
                for waiter in waits:
                    waiter.cancel()

    def _leads(self, term: int) -> bool:
        return self._consensus.state_is_current() and self._consensus.raft.term == term

    # --- placing --------------------------------------------------------------------

    async def _place(self, term: int) -> float:
        """One placement pass; returns what planning cost (seconds of the loop's time).

        The queue planner (``QueuePlanner``) spares what cannot change the plan. What
        is left is planned in slices, run in bursts with a pause after each in which
        requests and Raft go on, so no request waits for a whole plan of a deep
        queue; the plan is as of its first slice, which is safe to propose.
        """
        began = time.monotonic()
        if not self._control.has_pending():
            # Nothing to place (the idle pass every IDLE_WAKE_SECONDS): offers and a
            # plan of every node would cost an idle leader for nothing.
            self._waiting, self._planned = {}, None
            return time.monotonic() - began
        offers = tuple(
            replace(offer, schedulable=False, unschedulable_reason="unreachable")
            if offer.name in self._unreachable and offer.schedulable
            else offer
            for offer in map(offer_of, self._view.nodes())
        )
        steps = self._planner.plan(
            self._control, offers, now_us(), new_run_id=lambda: uuid.uuid4().hex[:12]
        )
        cost = 0.0
        burst_ends = began + PLAN_BURST_SECONDS
        while True:
            try:
                next(steps)
            except StopIteration as done:
                plan: ClusterPlan = done.value
                break
            if time.monotonic() < burst_ends:
                continue
            cost += time.monotonic() - began
            await asyncio.sleep(PLAN_BREATHER_SECONDS)
            began = time.monotonic()
            burst_ends = began + PLAN_BURST_SECONDS
            if not self._leads(term):
                return cost  # deposed meanwhile: the run loop ends the term's duties
        if plan is self._planned:
            return cost + time.monotonic() - began  # the last plan again: nothing to do
        self._note_waiting(plan)
        self._planned = plan
        cost += time.monotonic() - began
        if not plan.assignments:
            return cost
        results = await asyncio.gather(
            *(self._commit(assignment) for assignment in plan.assignments), return_exceptions=True
        )
        for assignment, result in zip(plan.assignments, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, (NotLeaderError, ProposalTimeoutError)):
                    raise result
                _log.warning("assignment of %s failed: %s", assignment.job_id, result)
                continue
            job = self._control.job(assignment.job_id)
            if job is not None and job.assignment and job.assignment.run_id == assignment.run_id:
                self._send_start(term, job)
        return cost

    def _note_waiting(self, plan: ClusterPlan) -> None:
        """Takes the plan's waiting jobs, and tells watchers of those whose reason or
        position moved. When the plan only added waiting jobs to the last one's (new
        submissions to a deep queue), only those are looked at."""
        known = self._planned.waiting if self._planned is not None else None
        if known and plan.waiting[: len(known)] == known:
            added = plan.waiting[len(known) :]
            self._waiting.update((entry.job_id, (entry.reason, entry.position)) for entry in added)
            self._jobs.publish([entry.job_id for entry in added])
            return
        before, self._waiting = self._waiting, waiting_reasons(plan)
        moved = [job_id for job_id, why in self._waiting.items() if before.get(job_id) != why]
        self._jobs.publish(moved)

    async def _commit(self, command: Command) -> object:
        return await self._consensus.propose(encode(command))

    # --- talking to nodes -----------------------------------------------------------

    def _address_of(self, node: str) -> str | None:
        if node == self._consensus.name:
            return self._local_address
        info = self._view.node(node)
        if info is None or info.state in DOWN_STATES:
            return None
        return info.address

    def _send_start(self, term: int, job: ClusterJob) -> None:
        task = asyncio.ensure_future(self._start(term, job))
        task.add_done_callback(_log_failure)

    async def _start(self, term: int, job: ClusterJob) -> None:
        assignment = job.assignment
        if assignment is None or assignment.run_id in self._revoking:
            return
        address = self._address_of(assignment.node)
        if address is None:
            return  # reconciliation retries; node loss gives it up
        attempts = self._start_attempts[assignment.run_id] = (
            self._start_attempts.get(assignment.run_id, 0) + 1
        )
        self._last_start_sent[assignment.run_id] = time.monotonic()
        request = node_pb2.StartRunRequest(
            job_id=job.id,
            run_id=assignment.run_id,
            attempt=assignment.attempt,
            spec=job.spec,
            gpu_indices=list(assignment.gpu_indices),
            term=assignment.term,
            sequence=assignment.sequence,
            user=job.user,
            lease_seconds=self._lease_seconds,
            sender_term=term,
        )
        try:
            await self._peers.node_stub(address).StartRun(request, timeout=self._call_timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _UNREACHABLE_CODES:
                self._unreachable.add(assignment.node)
            refused = classify_error(exc) is SendOutcome.REFUSED
            sole_attempt = attempts == 1 and self._start_attempts[assignment.run_id] == 1
            if refused and sole_attempt and assignment.term == term and self._leads(term):
                # Nothing listened on the node: it never got the run, so no copy can
                # run there. Take the assignment back; the job is placed again at once
                # without spending an attempt, instead of waiting out a lease.
                self._revoking.add(assignment.run_id)
                await self._commit(
                    RevokeAssignment(
                        job_id=job.id, run_id=assignment.run_id,
                        reason=f"{assignment.node} refused the connection", at_us=now_us(),
                    )
                )  # fmt: skip
                return
            if exc.code() is grpc.StatusCode.FAILED_PRECONDITION and self._leads(term):
                # The node will not run it (a newer term, a GPU it says is busy): the
                # run is lost and the job goes back to the queue, retries permitting.
                await self._commit(
                    ReportRun(
                        job_id=job.id, run_id=assignment.run_id, node=assignment.node,
                        state=states.LOST, exit_code=None,
                        reason=f"could not start on {assignment.node}: {exc.details()}",
                        at_us=now_us(),
                    )
                )  # fmt: skip
            return
        self._reached(assignment.node)

    async def _keep_reconciling(self, term: int) -> None:
        """Every ``_renew_interval``, reconcile each node on its own: a node that does
        not answer delays nobody else's lease renewal."""
        in_flight: dict[str, asyncio.Task[None]] = {}
        asked: dict[str, float] = {}
        """Node → when this loop last asked it for its runs (monotonic)."""
        while self._leads(term):
            await asyncio.sleep(self._renew_interval)
            self._forget_inactive_runs()
            now = time.monotonic()
            with_runs = set(self._control.nodes_with_runs())
            for node in sorted(self._nodes_to_reconcile()):
                if node not in with_runs and now - asked.get(node, -math.inf) < (
                    IDLE_RECONCILE_SECONDS
                ):
                    continue  # holds none of the log's runs: asked less often
                if node not in in_flight or in_flight[node].done():
                    asked[node] = now
                    in_flight[node] = asyncio.create_task(self._reconcile_node(term, node))
            for node, task in list(in_flight.items()):
                if task.done():
                    del in_flight[node]
                    if not task.cancelled() and (error := task.exception()) is not None:
                        raise error
            await self._give_up_dead_nodes(term)

    async def _reconcile_node(self, term: int, node: str) -> None:
        runs = await self._list_runs(term, node)
        if runs is not None and self._leads(term):
            await self._settle(term, node, runs)

    def _nodes_to_reconcile(self) -> set[str]:
        nodes = {info.name for info in self._view.nodes() if info.state not in DOWN_STATES}
        return nodes | set(self._control.nodes_with_runs())

    def _forget_inactive_runs(self) -> None:
        active = {
            job.assignment.run_id
            for job in self._control.jobs(states=ACTIVE_STATES)
            if job.assignment is not None
        }
        self._start_attempts = {r: n for r, n in self._start_attempts.items() if r in active}
        self._revoking &= active
        self._last_start_sent = {r: t for r, t in self._last_start_sent.items() if r in active}
        unstarted = {
            job.assignment.run_id
            for job in self._control.jobs(states=(states.SCHEDULED, states.STARTING))
            if job.assignment is not None
        }
        self._unstarted_since = {r: t for r, t in self._unstarted_since.items() if r in unstarted}

    async def _reconcile(self, term: int) -> None:
        """Compare every reachable node's runs with the log and settle differences
        (a new leader does this once, whole, before it places anything)."""
        nodes = sorted(self._nodes_to_reconcile())
        reports = await asyncio.gather(*(self._list_runs(term, node) for node in nodes))
        for node, runs in zip(nodes, reports, strict=True):
            if runs is not None and self._leads(term):
                await self._settle(term, node, runs)

    async def _list_runs(self, term: int, node: str) -> list[types_pb2.Run] | None:
        address = self._address_of(node)
        if address is None:
            return None
        request = node_pb2.ListRunsRequest(
            term=term, leader=self._consensus.name, lease_seconds=self._lease_seconds
        )
        try:
            response = await self._peers.node_stub(address).ListRuns(
                request, timeout=self._call_timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _UNREACHABLE_CODES:
                self._unreachable.add(node)
            return None
        self._reached(node)
        return list(response.runs)

    def _reached(self, node: str) -> None:
        self._contact[node] = time.monotonic()
        self._unreachable.discard(node)

    async def _settle(self, term: int, node: str, runs: list[types_pb2.Run]) -> None:
        by_id = {run.id: run for run in runs}
        for job in self._control.active_on(node):
            assignment = job.assignment
            assert assignment is not None
            run = by_id.get(assignment.run_id)
            if run is None:
                await self._settle_missing(term, job)
                continue
            seen = _run_state(run)
            if seen != job.state and seen != states.PENDING:
                await self._commit(report_of(job.id, node, run))
            elif job.cancel_requested and seen in (states.STARTING, states.RUNNING):
                await self._stop(term, node, run.id, job.cancel_reason or "cancelled")
            elif seen in (states.STARTING, states.PENDING) and self._overdue(job):
                if run.id not in self._revoking:
                    self._revoking.add(run.id)
                    _log.warning(
                        "run %s of job %s did not start on %s within %g s; giving it up",
                        run.id, job.id, node, self._start_timeout,
                        extra={"event": "leader.run_overdue", "run": run.id, "job": job.id},
                    )  # fmt: skip
                # Until its node records the end (the stop waits out a start in progress).
                reason = f"lost: did not start on {node} within {self._start_timeout:g} s"
                await self._stop(term, node, run.id, reason, lost=True)
        for run in runs:
            if _run_state(run) not in (states.STARTING, states.RUNNING):
                continue
            owner = self._control.job(run.job_id)
            current = owner.assignment if owner is not None else None
            if current is None or current.run_id != run.id or current.node != node:
                await self._stop(term, node, run.id, "stale: the cluster placed this job elsewhere")

    async def _settle_missing(self, term: int, job: ClusterJob) -> None:
        """The job's node does not have its run: it never arrived, or is on its way.

        A cancelled job is taken back and ends at once (a copy that still lands is
        stopped as stale by the next reconciliation, and nothing is placed again). A
        run overdue is given up once no StartRun that could still start it is in
        flight. Any other is sent again: the node starts a run id at most once.
        """
        assignment = job.assignment
        assert assignment is not None
        run_id, node = assignment.run_id, assignment.node
        if job.cancel_requested and job.state == states.SCHEDULED:
            if run_id not in self._revoking:
                self._revoking.add(run_id)
                _log.info(
                    "run %s of cancelled job %s never reached %s: ending the job",
                    run_id, job.id, node,
                    extra={"event": "leader.cancel_unstarted", "run": run_id, "job": job.id},
                )  # fmt: skip
                await self._commit(
                    RevokeAssignment(
                        job_id=job.id, run_id=run_id, at_us=now_us(),
                        reason=f"cancelled before {node} started it",
                    )
                )  # fmt: skip
            return
        if not self._overdue(job):
            if run_id not in self._revoking:
                if assignment.run_id in self._last_start_sent:
                    _log.info(
                        "run %s of job %s is not on %s: sending it again", run_id, job.id, node,
                        extra={"event": "leader.run_redriven", "run": run_id, "job": job.id},
                    )  # fmt: skip
                self._send_start(term, job)
            return
        if run_id not in self._revoking:
            self._revoking.add(run_id)  # send it no more; give it up once none is in flight
            _log.warning(
                "run %s of job %s never started on %s within %g s; giving it up",
                run_id, job.id, node, self._start_timeout,
                extra={"event": "leader.run_overdue", "run": run_id, "job": job.id},
            )  # fmt: skip
        last_sent = self._last_start_sent.get(run_id, -math.inf)
        if time.monotonic() - last_sent <= 2 * self._call_timeout:
            return  # a StartRun may still be on its way there
        await self._commit(
            ReportRun(
                job_id=job.id, run_id=run_id, node=node, state=states.LOST, exit_code=None,
                reason=f"lost: {node} never started it within {self._start_timeout:g} s",
                at_us=now_us(),
            )
        )  # fmt: skip

    def _overdue(self, job: ClusterJob) -> bool:
        """Whether the job's run has been scheduled or starting longer than the start
        timeout, counted from when this leader first saw it so (a new leader's clock
        starts afresh: it gives a run more time, never less)."""
        if job.assignment is None or job.state not in (states.SCHEDULED, states.STARTING):
            return False
        now = time.monotonic()
        since = self._unstarted_since.setdefault(job.assignment.run_id, now)
        return now - since > self._start_timeout

    async def _stop(
        self, term: int, node: str, run_id: str, reason: str, *, lost: bool = False
    ) -> None:
        address = self._address_of(node)
        if address is None:
            return
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self._peers.node_stub(address).StopRun(
                node_pb2.StopRunRequest(run_id=run_id, term=term, reason=reason, lost=lost),
                timeout=self._call_timeout,
            )

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
        if job.cancel_requested and job.is_active:
            task = asyncio.ensure_future(self.stop_cancelled(job))
            task.add_done_callback(_log_failure)

    async def stop_cancelled(self, job: ClusterJob) -> None:
        """A cancel was committed for a running job: tell its node now rather than at
        the next reconciliation. A run still scheduled may never have reached its
        node: the node's runs are compared at once, so such a job ends now."""
        if job.assignment is None or not self._consensus.is_leader:
            return
        term = self._consensus.raft.term
        await self._stop(
            term, job.assignment.node, job.assignment.run_id, job.cancel_reason or "cancelled"
        )
        if job.state == states.SCHEDULED and self._leads(term):
            await self._reconcile_node(term, job.assignment.node)

    async def _give_up_dead_nodes(self, term: int) -> None:
        now = time.monotonic()
        # A run whose lease lapsed is sent SIGTERM, and SIGKILL only after the grace.
        patience = self._lease_seconds + self._stop_grace_seconds + LEASE_MARGIN_SECONDS
        if now - self._led_since < patience:
            return
        for node in self._control.nodes_with_runs():
            info = self._view.node(node)
            if info is not None and info.state not in DOWN_STATES:
                continue
            if now - self._contact.get(node, self._led_since) < patience:
                continue
            state = "gone" if info is None else types_pb2.NodeState.Name(info.state)[11:].lower()
            await self._commit(
                NodeLost(
                    node=node,
                    reason=f"node {node} is {state}; its runs' lease expired "
                    f"({self._lease_seconds:g} s without a leader's word)",
                    at_us=now_us(),
                )
            )
            _log.warning("gave up the runs of %s", node, extra={"event": "leader.node_lost"})


def _ended_a_run(job: ClusterJob) -> bool:
    """Whether ``job`` just gave back what a run held (it is neither running nor a
    fresh submission)."""
    return not job.is_active and not (job.state == states.PENDING and job.attempts == 0)


def _log_failure(task: asyncio.Future[None]) -> None:
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, (NotLeaderError, ProposalTimeoutError)):
        _log.warning("leader call failed: %s", error)
