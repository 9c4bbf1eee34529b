"""`QueuePlanner`: the leader's placement step, with a memory of its last plan.

A placement pass plans the whole due queue, which costs in proportion to it (about
5 µs a job). On a deep queue most passes follow a change that cannot alter what
the last plan decided, and the planner then spares the work:

- nothing the last plan was made from changed (the state but for new submissions,
  the offers, which backed-off jobs are due): the last plan is the plan;
- only new jobs were submitted, each after every queued single-node job in queue
  order, asking for one node and no dataset, with a runtime every open node offers:
  they are decided on top of the last plan's builder
  (``scheduler.PlanBuilder.extend``), which is the plan of the whole queue (a plan
  decides jobs one after another);
- otherwise, a plan from scratch (``plan_keeping_builder``).

A new lab policy (``murmur policy apply``) is a change like any other: a plan from
scratch, under the configuration's policy refined by it (``effective_policy``).

Every answer equals what ``plan_in_slices`` would make of the same inputs; the
tests hold the planner to that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from murmur import scheduler
from murmur.node.control.leader.placement import (
    PLAN_SLICE,
    ClusterPlan,
    NodeOffer,
    OnePass,
    assignment_of,
    honour_drains,
    job_request,
    placed_jobs,
    plan_keeping_builder,
    runtime_of,
)
from murmur.node.control.queue.records import ClusterJob
from murmur.node.control.queue.state import ControlState
from murmur.scheduler.slices import Slices


@dataclass(slots=True)
class _LastPlan:
    plan: ClusterPlan
    one_pass: OnePass | None
    """Set while new jobs may be decided on top (one pass, nothing placed)."""
    other_changes: int
    submissions: int
    """How many of the state's ``submitted_since_change`` the plan holds."""
    offers: tuple[NodeOffer, ...]
    now_us: int
    lab_policy: object
    """The state's lab policy it was made under (compared by identity)."""


class QueuePlanner:
    """Plans the due queue like ``plan_in_slices``, doing only the work that can
    change the plan since the last one (see the module docstring)."""

    def __init__(
        self, *, policy: scheduler.Policy = scheduler.DEFAULT_POLICY, slice_size: int = PLAN_SLICE
    ) -> None:
        self._policy = policy
        self._slice_size = slice_size
        self._last: _LastPlan | None = None

    def forget(self) -> None:
        """The next plan starts from scratch (a new term: another leader may have
        changed anything)."""
        self._last = None

    def plan(
        self,
        state: ControlState,
        offers: Sequence[NodeOffer],
        now_us: int,
        *,
        new_run_id: Callable[[], str],
    ) -> Slices[ClusterPlan]:
        """The plan of ``state``'s due queue on ``offers`` at ``now_us``, in slices
        (as ``plan_in_slices``). Returns the very last ``ClusterPlan`` object when
        nothing could change it."""
        offers = honour_drains(state, offers)  # a drain changes the state: a new plan
        last, self._last = self._last, None
        if (
            last is not None
            and last.lab_policy is state.lab_policy
            and self._unchanged_but_submissions(last, state, offers, now_us)
        ):
            new_jobs = state.submitted_since_change(last.submissions)
            if not new_jobs:
                last.now_us = now_us
                self._last = last
                return last.plan
            if last.one_pass is not None and self._may_extend(new_jobs, offers):
                plan = yield from self._extend(last, last.one_pass, new_jobs, new_run_id, now_us)
                if plan is not None:
                    return plan
        plan, one_pass = yield from plan_keeping_builder(
            state, offers, now_us,
            policy=self._policy, new_run_id=new_run_id, slice_size=self._slice_size,
        )  # fmt: skip
        self._last = _LastPlan(
            plan=plan,
            one_pass=one_pass if not plan.assignments else None,
            other_changes=state.other_changes,
            submissions=state.submissions_since_change,
            offers=offers,
            now_us=now_us,
            lab_policy=state.lab_policy,
        )
        return plan

    @staticmethod
    def _unchanged_but_submissions(
        last: _LastPlan, state: ControlState, offers: tuple[NodeOffer, ...], now_us: int
    ) -> bool:
        return (
            not last.plan.assignments  # committed since: the state changed
            and last.other_changes == state.other_changes
            and last.offers == offers
            and last.now_us <= now_us  # a clock set back: fewer jobs may be due
            and not state.becomes_due(last.now_us, now_us)
        )

    @staticmethod
    def _may_extend(jobs: Sequence[ClusterJob], offers: Sequence[NodeOffer]) -> bool:
        """Whether ``jobs`` keep the plan one pass of one builder (see
        ``plan_keeping_builder``)."""
        open_nodes = [offer for offer in offers if offer.schedulable]
        return all(
            job.spec.nodes <= 1
            and all(runtime_of(job.spec) in offer.runtimes for offer in open_nodes)
            for job in jobs
        )

    def _extend(
        self,
        last: _LastPlan,
        one_pass: OnePass,
        jobs: list[ClusterJob],
        new_run_id: Callable[[], str],
        now_us: int,
    ) -> Slices[ClusterPlan | None]:
        builder = one_pass.builder
        requests = [job_request(job) for job in jobs]
        if not builder.extend(requests, now_us):
            return None
        yield
        while builder.decide(self._slice_size):
            yield
        waiting = yield from builder.waiting_in_slices(self._slice_size)
        decided = builder.plan_with(waiting)
        plan = ClusterPlan(
            assignments=tuple(
                assignment_of(job, placement, new_run_id(), now_us)
                for placement, job in placed_jobs(decided, jobs)
            ),
            waiting=waiting,
            reservations=decided.reservations,
        )
        self._last = _LastPlan(
            plan=plan,
            one_pass=one_pass if not plan.assignments else None,
            other_changes=last.other_changes,
            submissions=last.submissions + len(jobs),
            offers=last.offers,
            now_us=now_us,
            lab_policy=last.lab_policy,
        )
        return plan
