"""Reclaiming lent quota: which borrowing jobs to stop so that a group gets back the
quota it lent (pure).

Cohorts follow Kueue's model (scheduler/lab_policy.py): a group may run beyond its
own quota on what the other groups of its cohort leave idle. With ``[preemption]
reclaim_lent_quota = true`` a lender that wants its quota back need not wait for
the borrowers' jobs to end; the leader asks this module, for a waiting job, whom to
stop:

- **Who may reclaim**: a single-node job whose group is in a cohort and stays within
  its own quota once placed (what the group's jobs hold now plus what the job asks
  is at most the group's ``gpus``; its user within their cap too).
- **Whom it may stop**: running jobs of the *other* groups of its cohort that
  *borrow*, of the job's tier or a lower one; never a higher tier. A group's jobs
  are counted oldest first (by start, then id), and a job borrows when its GPUs,
  added to those of its group's jobs counted before it, go beyond the group's
  quota: the jobs that took their group over its quota, never one within it.
- **How many**: as for tiers (``preemption.fewest_victims``): on one node, the
  fewest that make room for one rank of the job, the lowest tier then the most
  recently started first (the least work lost), none that the others make
  unneeded; the node needing the fewest wins.

Whether the room freed would then go to the reclaiming job (and not back to the
borrower, requeued ahead of it) is the leader's question: it depends on the whole
queue (node/control/leader/preemption.py).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from murmur.scheduler.lab_policy import Group, LabPolicy
from murmur.scheduler.policy import Policy
from murmur.scheduler.preemption import Preemption, RunningJob, fewest_victims
from murmur.scheduler.snapshot import JobRequest, NodeState


@dataclass(frozen=True, slots=True)
class QuotaUse:
    """What the jobs holding GPUs now hold against the lab's quotas (``quota_use``).

    Attributes:
        by_group: GPUs held per group with a quota.
        by_user: GPUs held per user.
        borrowing: ids of the jobs that took their group beyond its quota.
    """

    by_group: Mapping[str, int]
    by_user: Mapping[str, int]
    borrowing: frozenset[str]


def quota_use(lab: LabPolicy, holders: Iterable[RunningJob]) -> QuotaUse:
    """Who holds what of ``holders`` (every job holding GPUs now, one being stopped
    included: it holds them until it ends), and which of them borrow."""
    by_user: dict[str, int] = {}
    members: dict[str, list[RunningJob]] = {}
    for holder in holders:
        if holder.gpus <= 0:
            continue
        by_user[holder.user] = by_user.get(holder.user, 0) + holder.gpus
        group = lab.group_of(holder.user)
        if group is not None and group.gpus is not None:
            members.setdefault(group.name, []).append(holder)
    by_group: dict[str, int] = {}
    borrowing: set[str] = set()
    for name, jobs in members.items():
        quota = lab.groups[name].gpus
        assert quota is not None  # only groups with a quota are gathered
        held = 0
        for job in sorted(jobs, key=lambda job: (job.started_us, job.job_id)):
            held += job.gpus
            if held > quota:
                borrowing.add(job.job_id)
        by_group[name] = held
    return QuotaUse(by_group, by_user, frozenset(borrowing))


def reclaiming_group(lab: LabPolicy, job: JobRequest, use: QuotaUse) -> Group | None:
    """The group ``job`` may reclaim lent quota for: its own, when it is in a cohort
    and ``job``, placed, keeps it within its quota (and its user within their cap);
    else None."""
    group = lab.group_of(job.user)
    asks = job.gpus * job.nodes
    if group is None or group.gpus is None or not group.cohort or asks <= 0:
        return None
    if use.by_group.get(group.name, 0) + asks > group.gpus:
        return None
    cap = lab.user_cap(job.user)
    if cap is not None and use.by_user.get(job.user, 0) + asks > cap:
        return None
    return group


def reclaim_victims(
    job: JobRequest,
    tier: int,
    nodes: Sequence[NodeState],
    running: Mapping[str, Sequence[RunningJob]],
    policy: Policy,
    lab: LabPolicy,
    use: QuotaUse,
    *,
    spare: Collection[str] = frozenset(),
) -> Preemption | None:
    """The fewest borrowing jobs of ``job``'s cohort, of tier ``tier`` (``job``'s)
    or lower, to stop so that one rank of ``job`` fits on one node; None when
    ``job`` may not reclaim (see ``reclaiming_group``; a gang never does) or no node
    can be freed for it that way.

    Args:
        job: the waiting job.
        tier: its tier's rank.
        nodes: every node as the scheduler sees it now.
        running: node name -> the jobs running there that may be stopped (one
            being stopped already is not).
        policy: the scheduling policy (default requests).
        lab: the lab policy (groups, quotas, cohorts).
        use: what the jobs holding GPUs hold (``quota_use``).
        spare: ids of jobs not to stop whatever they borrow (the leader spares
            those that would take the room back once requeued).
    """
    lender = reclaiming_group(lab, job, use)
    if lender is None:
        return None

    def borrows_from_lender(victim: RunningJob) -> bool:
        if victim.job_id not in use.borrowing or victim.tier > tier or victim.job_id in spare:
            return False
        group = lab.group_of(victim.user)
        return group is not None and group.name != lender.name and group.cohort == lender.cohort

    return fewest_victims(job, nodes, running, policy, borrows_from_lender)
