"""Which feasible node is best for a rank, and which of its GPUs to use.

A node's score is a tuple compared smallest first (``NodeScore``):

0. spread peers: for a job of a spread group (a service's replica), how many of the
   group's jobs the node runs already, fewest first: replicas land on different
   nodes while there are nodes with room, so one node's loss takes one replica,
   not all of them. 0 everywhere for other jobs;
0b. elsewhere: 1 on a node other than the job's ``previous_node`` (when it names
   one), so a replica restarting after a crash runs where its image and weights
   are warm;
1. datasets missing: the number of the job's datasets the node lacks, so a node
   holding all of them beats one holding some, which beats one holding none;
2. other data: how many datasets the node holds that pending jobs want but this
   job does not, fewest first, so jobs without data leave data nodes to jobs that
   need them (in the benchmark it doubles the share of data-bound ranks started
   next to their data);
3. GPUs taken: free (unheld) GPUs the rank would take, fewest first. The same
   on every node for an exclusive job; a sharing job prefers nodes where it can
   join GPUs already shared over breaking into a free one;
4. GPUs left: free GPUs the node would have after the rank is placed, fewest
   first. This is best fit: small jobs fill partly used nodes and whole nodes
   stay whole for 8-GPU jobs;
5. CPUs left after placement, fewest first (best fit again, for CPU-only jobs);
6. the node's name, so equal nodes always break the same way.

All GPUs of one rank are on one node (a rank never spans nodes). Within the node,
GPUs are picked by ``choose_indices``: sharing jobs first join GPUs already shared
(lowest index first); the rest come from free GPUs, inside one NVLink group or else
one PCIe switch when the node reports its topology and one such group has room
(the best-fitting group: ``gpu_topology.choose_near``); otherwise as a contiguous
run of indices when one exists (the shortest run that fits, lowest index on ties:
on most servers neighbouring indices share a PCIe switch or NVLink pair, and taking
the shortest run keeps long runs whole), else the lowest free indices. Which GPUs
never changes which node: the node's score is the same whatever GPUs it gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from murmur.scheduler.ask import Ask
from murmur.scheduler.feasibility import check_room
from murmur.scheduler.gpu_topology import choose_near
from murmur.scheduler.gpu_topology import shortest_run as shortest_run  # its old home
from murmur.scheduler.policy import DatasetLocality
from murmur.scheduler.room import NodeRoom
from murmur.scheduler.snapshot import JobRequest, NodeState


class NodeScore(NamedTuple):
    """How good a node is for one rank; smaller is better (see module doc)."""

    spread_peers: int
    elsewhere: int
    datasets_missing: int
    other_data: int
    gpus_taken: int
    gpus_left: int
    cpus_left: float
    name: str


def score_node(node: NodeState, job: JobRequest) -> NodeScore:
    """The score of ``node`` for one rank of ``job`` (assumed feasible there).

    Alone, without the queue, every dataset of the node counts as wanted by someone
    for ``other_data``; inside ``schedule`` only those some pending job names do.
    """
    ask = Ask.of(job, DatasetLocality.PREFER)
    return score_room(NodeRoom(node), ask, frozenset(job.datasets), job)


def rank_nodes(
    nodes: Sequence[NodeState],
    job: JobRequest,
    *,
    dataset_locality: DatasetLocality = DatasetLocality.PREFER,
) -> tuple[NodeState, ...]:
    """The nodes where one rank of ``job`` fits now, best first."""
    ask = Ask.of(job, dataset_locality)
    datasets = frozenset(job.datasets)
    scored = []
    for node in nodes:
        room = NodeRoom(node)
        if check_room(room, ask) is None:
            scored.append((score_room(room, ask, datasets, job), node))
    scored.sort(key=lambda pair: pair[0])
    return tuple(node for _, node in scored)


def choose_gpu_indices(node: NodeState, job: JobRequest) -> tuple[int, ...]:
    """The GPUs of ``node`` one rank of ``job`` would get (assumed feasible there)."""
    return choose_indices(NodeRoom(node), Ask.of(job, DatasetLocality.PREFER))


def score_room(
    room: NodeRoom, ask: Ask, datasets: frozenset[str], job: JobRequest | None = None
) -> NodeScore:
    """``score_node`` on the planner's working copy of a node (``job`` for its spread
    group and previous node; None: neither)."""
    missing = len(datasets - room.datasets) if datasets else 0
    wanted = room.wanted_datasets
    other = (len(wanted - datasets) if datasets else len(wanted)) if wanted else 0
    taken = gpus_taken_from_free(room, ask)
    peers = elsewhere = 0
    if job is not None:
        if job.spread:
            peers = room.spread.get(job.spread, 0)
        if job.previous_node and room.name != job.previous_node:
            elsewhere = 1
    return NodeScore(
        peers, elsewhere, missing, other, taken, len(room.free) - taken,
        room.cpus_free - ask.cpus, room.name,
    )  # fmt: skip


def gpus_taken_from_free(room: NodeRoom, ask: Ask) -> int:
    """Free (unheld) GPUs one rank of ``ask`` takes on the node (sharers join first)."""
    if not (ask.share and room.shared):
        return ask.gpus
    if ask.model_lower:
        matching = room.matching(ask.model_lower)
        shared = sum(1 for index in room.shared if index in matching)
    else:
        shared = len(room.shared)
    return max(0, ask.gpus - shared)


def choose_indices(room: NodeRoom, ask: Ask) -> tuple[int, ...]:
    """The GPU indices one rank of ``ask`` gets on ``room`` (see module doc)."""
    if ask.gpus == 0:
        return ()
    key = (ask.gpus, ask.model_lower, ask.share)
    choices = room.choices
    if choices is None:
        choices = room.choices = {}
    chosen = choices.get(key)
    if chosen is None:
        chosen = choices[key] = _choose_indices(room, ask)
    return chosen


def _choose_indices(room: NodeRoom, ask: Ask) -> tuple[int, ...]:
    matching = room.matching(ask.model_lower) if ask.model_lower else None
    free = room.free if matching is None else [i for i in room.free if i in matching]
    if not ask.share:
        return choose_near(free, ask.gpus, room.topology())
    shared = room.shared if matching is None else [i for i in room.shared if i in matching]
    joined = shared[: ask.gpus]
    rest = choose_near(free, ask.gpus - len(joined), room.topology())
    return tuple(sorted((*joined, *rest)))
