"""`JobPlacer`: one placement pass of the due pending jobs, in one term.

A pass plans the queue with the pure placement step (node/control/leader/placement.py,
through the ``QueuePlanner``, which spares what cannot change the plan) over
offers built from gossip, commits one ``AssignJob`` per placement, and once each
is committed hands it to its node (node/control/leader/dispatch.py). A node a
call of this term could not reach is offered nothing until one does. The jobs the
plan leaves waiting keep their reason and queue position for ``GetJob`` and
``WatchJobs``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace

from murmur import scheduler
from murmur.node.control.cluster_view import ClusterView
from murmur.node.control.leader.dispatch import RunDispatch
from murmur.node.control.leader.node_calls import NodeCalls
from murmur.node.control.leader.offers import offer_of
from murmur.node.control.leader.placement import ClusterPlan, NodeOffer, waiting_reasons
from murmur.node.control.leader.planner import QueuePlanner
from murmur.node.control.leader.preemption import preemptions
from murmur.node.control.leader.term import TERM_ENDED, LeaderTerm, now_us
from murmur.node.control.queue.cluster_jobs import ClusterJobs
from murmur.node.control.queue.state import ControlState

_log = logging.getLogger("murmur.leader")

PLAN_BURST_SECONDS = 0.002
PLAN_BREATHER_SECONDS = 0.001
"""A plan runs in bursts of about ``PLAN_BURST_SECONDS`` of slices, with a pause of
``PLAN_BREATHER_SECONDS`` after each in which requests go on: a call that needs a
few turns of the event loop is not held up a burst per turn."""


class JobPlacer:
    """Places due pending jobs, pass after pass, in one term.

    Args:
        term: the term that commits the assignments.
        control: the replicated state (the queue).
        jobs: tells watchers of jobs whose waiting reason or position moved.
        view: the cluster as gossip sees it (the offers).
        calls: this term's calls to nodes (which nodes did not answer).
        dispatch: hands committed assignments to their nodes.
        policy: the scheduling policy (its default request from the configuration).
    """

    def __init__(
        self,
        term: LeaderTerm,
        *,
        control: ControlState,
        jobs: ClusterJobs,
        view: ClusterView,
        calls: NodeCalls,
        dispatch: RunDispatch,
        policy: scheduler.Policy = scheduler.DEFAULT_POLICY,
    ) -> None:
        self._term = term
        self._control = control
        self._jobs = jobs
        self._view = view
        self._calls = calls
        self._dispatch = dispatch
        # A new term's: another leader may have changed anything.
        self._planner = QueuePlanner(policy=policy)
        self._policy = policy
        self._waiting: dict[str, tuple[str, int]] = {}
        self._planned: ClusterPlan | None = None
        """The plan ``_waiting`` comes from."""

    def waiting(self) -> Mapping[str, tuple[str, int]]:
        """Job id → (why it waits, queue position), from the last pass."""
        return self._waiting

    async def place(self) -> float:
        """One placement pass; returns what planning cost (seconds of the loop's time).

        What is left to plan is planned in slices, run in bursts with a pause after
        each in which requests and Raft go on, so no request waits for a whole plan
        of a deep queue; the plan is as of its first slice, which is safe to propose.

        Raises:
            NotLeaderError, ProposalTimeoutError: an assignment was not committed.
        """
        began = time.monotonic()
        if not self._control.has_pending():
            # Nothing to place (the idle pass every IDLE_WAKE_SECONDS): offers and a
            # plan of every node would cost an idle leader for nothing.
            self._waiting, self._planned = {}, None
            return time.monotonic() - began
        unreachable = self._calls.unreachable
        offers = tuple(
            replace(offer, schedulable=False, unschedulable_reason="unreachable")
            if offer.name in unreachable and offer.schedulable
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
            if not self._term.leads():
                return cost  # deposed meanwhile: the duties end the term
        if plan is self._planned:
            return cost + time.monotonic() - began  # the last plan again: nothing to do
        self._note_waiting(plan)
        self._planned = plan
        cost += time.monotonic() - began
        if plan.assignments:
            await self._assign(plan)
        await self._preempt(plan, offers)
        return cost

    async def _assign(self, plan: ClusterPlan) -> None:
        """Commit the plan's assignments together; send each committed one."""
        results = await asyncio.gather(
            *(self._term.commit(assignment) for assignment in plan.assignments),
            return_exceptions=True,
        )
        for assignment, result in zip(plan.assignments, results, strict=True):
            if isinstance(result, BaseException):
                if isinstance(result, TERM_ENDED):
                    raise result
                _log.warning(
                    "assignment of %s failed", assignment.job_id, exc_info=result,
                    extra={"event": "leader.assignment_failed", "job": assignment.job_id},
                )  # fmt: skip
                continue
            job = self._control.job(assignment.job_id)
            if job is not None and job.assignment and job.assignment.run_id == assignment.run_id:
                self._dispatch.send(job)

    async def _preempt(self, plan: ClusterPlan, offers: tuple[NodeOffer, ...]) -> None:
        """Stops lower-tier jobs for a waiting job, when the lab policy says so
        (node/control/leader/preemption.py); each victim's node hears of it as of a
        cancel (``LeaderDuties.applied``)."""
        for command in preemptions(self._control, offers, plan, now_us(), policy=self._policy):
            _log.warning(
                "preempting job %s for job %s: %s", command.job_id, command.by_job,
                command.reason, extra={"event": "leader.preempt", "job": command.job_id},
            )  # fmt: skip
            try:
                await self._term.commit(command)
            except TERM_ENDED:
                raise
            except Exception:
                _log.warning("preemption of %s failed", command.job_id, exc_info=True)

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
