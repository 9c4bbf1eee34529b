"""What every plan must satisfy, checked against the reference model of free resources.

Shared by the property tests (random snapshots) and the simulation (many plans in a
row). Each check asserts with a message that says which rule broke.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from murmur.scheduler import ClusterSnapshot, DatasetLocality, NodeState, Placement, Plan, Policy
from tests.scheduler.reference import EPSILON, NodeFree, all_datasets, free_after


def as_counted(snapshot: ClusterSnapshot, policy: Policy) -> ClusterSnapshot:
    """The snapshot with each job's CPUs and memory as placement counts them: a job
    that names none (0) asks the policy's default request."""
    default = policy.default_request
    return dataclasses.replace(
        snapshot,
        pending=tuple(
            dataclasses.replace(
                job,
                cpus=job.cpus if job.cpus > 0 else default.cpus,
                memory_bytes=job.memory_bytes if job.memory_bytes > 0 else default.memory_bytes,
            )
            for job in snapshot.pending
        ),
    )


def check_plan(snapshot: ClusterSnapshot, policy: Policy, plan: Plan) -> None:
    """Every invariant below, in turn, on the resources placement counts."""
    snapshot = as_counted(snapshot, policy)
    check_gpus_given_once(snapshot, plan)
    check_placements_fit(snapshot, policy, plan)
    check_gangs_whole(snapshot, plan)
    check_each_job_once(snapshot, policy, plan)
    check_passed_over_only_behind_a_reserver(snapshot, policy, plan)
    check_reservations_kept(snapshot, policy, plan)
    check_reservations_start_on_time(snapshot, policy, plan)


def check_gpus_given_once(snapshot: ClusterSnapshot, plan: Plan) -> None:
    """(1) No GPU goes to two jobs unless all share; no held GPU is taken unless shared."""
    jobs = {job.id: job for job in snapshot.pending}
    gpus = {(node.name, gpu.index): gpu for node in snapshot.nodes for gpu in node.gpus}
    given_to: dict[tuple[str, int], list[bool]] = {}
    for placement in plan.placements:
        share = jobs[placement.job_id].gpu_share
        for assignment in placement.assignments:
            assert len(set(assignment.gpu_indices)) == len(assignment.gpu_indices)
            for index in assignment.gpu_indices:
                gpu = gpus[(assignment.node, index)]
                if gpu.holders:
                    assert share, f"exclusive job on held GPU {assignment.node}/{index}"
                    assert gpu.shared, f"sharing job joined exclusive GPU {assignment.node}/{index}"
                given_to.setdefault((assignment.node, index), []).append(share)
    for key, shares in given_to.items():
        assert len(shares) == 1 or all(shares), f"GPU {key} given to an exclusive job and others"


def check_placements_fit(snapshot: ClusterSnapshot, policy: Policy, plan: Plan) -> None:
    """(2) Placed one after another, every rank fits what the snapshot had left."""
    jobs = {job.id: job for job in snapshot.pending}
    free = {node.name: NodeFree.of(node) for node in snapshot.nodes}
    for placement in plan.placements:
        job = jobs[placement.job_id]
        for assignment in placement.assignments:
            room = free[assignment.node]
            assert room.fits(job, policy.dataset_locality), (job, assignment)
            assert len(assignment.gpu_indices) == job.gpus
            assert set(assignment.gpu_indices) <= room.usable(job)
            if policy.dataset_locality is DatasetLocality.REQUIRE:
                assert set(job.datasets) <= room.node.datasets
            room.apply(job, assignment.gpu_indices)
    for room in free.values():
        assert room.cpus >= -EPSILON
        assert room.memory >= 0


def check_gangs_whole(snapshot: ClusterSnapshot, plan: Plan) -> None:
    """(4) A placed job has all its ranks, in order, each on its own node."""
    jobs = {job.id: job for job in snapshot.pending}
    for placement in plan.placements:
        ranks = placement.assignments
        assert [a.rank for a in ranks] == list(range(jobs[placement.job_id].nodes))
        assert len({a.node for a in ranks}) == len(ranks)


def check_each_job_once(snapshot: ClusterSnapshot, policy: Policy, plan: Plan) -> None:
    """(6) Every pending job is placed or waits, once; waiting ones in order, with reasons."""
    decided = [p.job_id for p in plan.placements] + [w.job_id for w in plan.waiting]
    assert sorted(decided) == sorted(job.id for job in snapshot.pending)
    placed = {p.job_id for p in plan.placements}
    order = [job.id for job in policy.queue_order(snapshot.pending)]
    assert [w.job_id for w in plan.waiting] == [i for i in order if i not in placed]
    assert [p.job_id for p in plan.placements] == [i for i in order if i in placed]
    queue_of = {job.id: job.queue for job in snapshot.pending}
    seen: Counter[str] = Counter()
    for entry in plan.waiting:
        seen[queue_of[entry.job_id]] += 1
        assert entry.position == seen[queue_of[entry.job_id]]
        assert entry.reason.startswith("waiting: ")
        assert len(entry.reason) > len("waiting: ")


def check_passed_over_only_behind_a_reserver(
    snapshot: ClusterSnapshot, policy: Policy, plan: Plan
) -> None:
    """(3) Priority: a job that still fits what the plan leaves may only wait because an
    earlier job (in queue order) holds the room it fits in, and its reason says so.

    Free resources only shrink during a plan, so a job fitting the leftovers fitted
    when its turn came; only a reservation can have kept it out.
    """
    order = {job.id: n for n, job in enumerate(policy.queue_order(snapshot.pending))}
    jobs = {job.id: job for job in snapshot.pending}
    reserved_by = {node: r.job_id for r in plan.reservations for node in r.nodes}
    left = free_after(snapshot, plan.placements)
    known = all_datasets(snapshot)
    for entry in plan.waiting:
        job = jobs[entry.job_id]
        if not set(job.datasets) <= known:
            assert entry.reason.endswith("on no node"), entry.reason
            continue
        fitting = [name for name, room in left.items() if room.fits(job, policy.dataset_locality)]
        if len(fitting) < job.nodes:
            assert not entry.reason.startswith("waiting: behind job "), entry.reason
            continue
        assert entry.reason.startswith("waiting: behind job "), (entry, fitting)
        blocker = entry.reason.removeprefix("waiting: behind job ").split()[0]
        assert order[blocker] < order[job.id]
        assert blocker in {reserved_by.get(name) for name in fitting}


def check_reservations_kept(snapshot: ClusterSnapshot, policy: Policy, plan: Plan) -> None:
    """(3, starvation) Jobs after a reserver never take, on its nodes, what it asked
    for and had free when its turn came, unless the reservation knows when it starts
    (then ``check_reservations_start_on_time``); one reservation per queue, per node."""
    if not policy.reserve_for_blocked_jobs:
        assert plan.reservations == ()
        return
    order = [job.id for job in policy.queue_order(snapshot.pending)]
    jobs = {job.id: job for job in snapshot.pending}
    queues = [r.queue for r in plan.reservations]
    assert len(queues) == len(set(queues)), "at most one reservation per queue"
    held = [node for r in plan.reservations for node in r.nodes]
    assert len(held) == len(set(held)), "a node is reserved for one job at most"
    waiting = {w.job_id for w in plan.waiting}
    after_all = free_after(snapshot, plan.placements)
    for reservation in plan.reservations:
        job = jobs[reservation.job_id]
        assert reservation.job_id in waiting
        assert 1 <= len(reservation.nodes) <= job.nodes
        if reservation.start_us is not None:
            continue
        ahead = set(order[: order.index(job.id)])
        before = free_after(snapshot, [p for p in plan.placements if p.job_id in ahead])
        for name in reservation.nodes:
            then, now = before[name], after_all[name]
            assert then.node.schedulable
            assert len(now.usable(job)) >= min(job.gpus, len(then.usable(job)))
            assert now.cpus + EPSILON >= min(job.cpus, then.cpus)
            assert now.memory >= min(job.memory_bytes, then.memory)


def check_reservations_start_on_time(snapshot: ClusterSnapshot, policy: Policy, plan: Plan) -> None:
    """(3, backfill) A reservation that knows when its reserver starts holds a node
    for every rank, and at that start each of them has room for one rank: what the
    plan leaves free, plus what running jobs give back by then (``releases``), plus
    what jobs the plan places give back by then (their time limits). So nothing
    placed, backfilled or not, delays the reserver past its start."""
    jobs = {job.id: job for job in snapshot.pending}
    nodes = {node.name: node for node in snapshot.nodes}
    for reservation in plan.reservations:
        start = reservation.start_us
        if start is None:
            continue
        job = jobs[reservation.job_id]
        assert start >= snapshot.now_us, reservation
        assert len(reservation.nodes) == job.nodes, reservation
        for name in reservation.nodes:
            room = free_at_time(snapshot, plan.placements, nodes[name], start)
            assert room.fits(job, policy.dataset_locality), (reservation, name)


def free_at_time(
    snapshot: ClusterSnapshot, placements: tuple[Placement, ...], node: NodeState, at_us: int
) -> NodeFree:
    """What ``node`` has free at ``at_us``: running jobs whose release ends by then
    are gone, and so are jobs of ``placements`` whose time limit ends by then."""
    gone = {release.job_id for release in node.releases if release.end_us <= at_us}
    free = NodeFree.of(node)
    for gpu in node.gpus:
        free.holders[gpu.index] = [gpu.shared for holder in gpu.holders if holder not in gone]
    for release in node.releases:
        if release.end_us <= at_us:
            free.cpus += release.cpus
            free.memory += release.memory_bytes
    jobs = {job.id: job for job in snapshot.pending}
    for placement in placements:
        job = jobs[placement.job_id]
        if job.time_limit_us and snapshot.now_us + job.time_limit_us <= at_us:
            continue
        for assignment in placement.assignments:
            if assignment.node == node.name:
                free.apply(job, assignment.gpu_indices)
    return free
