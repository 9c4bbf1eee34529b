"""Who goes first: the order in which a plan considers pending jobs.

The order is a policy, swappable without touching placement: any callable that
takes the pending jobs and returns them all, reordered, is a ``QueueOrder``. The
planner walks jobs in that order and a blocked job reserves room against every job
after it, so the order alone says who may overtake whom. A fair-share order (by
each group's use against its entitlement) plugs in here later; it only has to
return a permutation.

Both orders here are total (ties end on the job id), so a plan never depends on
the order in which the snapshot happened to list its jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from murmur.scheduler.snapshot import JobRequest


class QueueOrder(Protocol):
    """Returns every pending job exactly once, first to be considered first."""

    def __call__(self, pending: Sequence[JobRequest], /) -> Sequence[JobRequest]: ...


def priority_then_submit_order(pending: Sequence[JobRequest], /) -> tuple[JobRequest, ...]:
    """Higher priority first; among equals, earlier submission first (an array's
    tasks by index), then job id."""
    return tuple(
        sorted(pending, key=lambda job: (-job.priority, job.submit_order, job.submit_rank, job.id))
    )


def submit_order_only(pending: Sequence[JobRequest], /) -> tuple[JobRequest, ...]:
    """Strict arrival order (FIFO; an array's tasks by index), ignoring priority;
    the baseline's order."""
    return tuple(sorted(pending, key=lambda job: (job.submit_order, job.submit_rank, job.id)))


def lenders_first(borrowing: Collection[str], within: QueueOrder) -> QueueOrder:
    """Jobs that would run within their group's own quota before jobs that would
    borrow from their cohort (``borrowing``: their ids), each part in ``within``'s
    order (stable): Kueue's order. A group that lent its idle quota gets it back at
    the next placement, and a borrower stopped to give it back waits behind the
    lender's jobs rather than taking the room again."""

    def order(pending: Sequence[JobRequest]) -> Sequence[JobRequest]:
        ordered = within(pending)
        if not borrowing:
            return ordered
        return sorted(ordered, key=lambda job: job.id in borrowing)

    return order


def tiered(rank_of_queue: Callable[[str], int], within: QueueOrder) -> QueueOrder:
    """Every job of a higher tier before any of a lower one (a job's tier rank comes
    from its queue: the lab policy's ``[queues.NAME] tier``); ``within`` orders each
    tier. Stable, so jobs of one tier keep ``within``'s order."""

    def order(pending: Sequence[JobRequest]) -> Sequence[JobRequest]:
        ranks: dict[str, int] = {}
        for job in pending:
            if job.queue not in ranks:
                ranks[job.queue] = rank_of_queue(job.queue)
        if len(set(ranks.values())) <= 1:
            return within(pending)
        return sorted(within(pending), key=lambda job: -ranks[job.queue])

    return order
