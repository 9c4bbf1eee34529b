"""Batches: several job specs submitted in one call (``murmur job submit --from FILE``,
``Client.submit_jobs``), made all together or not at all.

Within a batch a job may wait for another of the same batch, named ``@N`` (the Nth
job, 1-based) in its dependencies, since the ids are not known before. The node
that takes the batch gives each job its id, replaces every ``@N`` by it, and orders
the jobs so each comes after those it waits for: the control state only ever sees
dependencies on jobs made before, which cannot form a cycle. A cycle among the
``@N`` is refused here, naming it.

A batch job's id is derived from its submitter and idempotency key
(``batch_job_id``): a batch sent again, through any node, names the same ids, so
the state can tell it from a batch that reuses a key for another job.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from murmur.node.errors import InvalidArgumentError
from murmur.node.jobspec.arrays import batch_reference
from murmur.v1 import types_pb2

JOB_ID_LENGTH = 12


def batch_job_id(user: str, idempotency_key: str) -> str:
    """The id of the job ``user`` submits in a batch under ``idempotency_key``."""
    digest = hashlib.sha256(f"{user}\x00{idempotency_key}".encode()).hexdigest()
    return digest[:JOB_ID_LENGTH]


def references(spec: types_pb2.JobSpec) -> list[int]:
    """The 0-based positions of the batch's jobs ``spec`` waits for (its ``@N``)."""
    found = []
    for dependency in spec.after:
        reference = batch_reference(dependency.job_id)
        if reference is not None:
            found.append(reference - 1)
    return found


def batch_order(specs: Sequence[types_pb2.JobSpec]) -> list[int]:
    """The positions of ``specs`` in an order where each job comes after the jobs of
    the batch it waits for (otherwise as given).

    Raises:
        InvalidArgumentError: a job waits for itself, or the jobs wait in a cycle
            (the message names the cycle, 1-based).
    """
    waits_for = [references(spec) for spec in specs]
    for position, targets in enumerate(waits_for):
        if position in targets:
            raise InvalidArgumentError(f"job {position + 1} of the batch waits for itself")
    done: list[int] = []
    state = [0] * len(specs)  # 0: not seen, 1: on the path, 2: ordered
    for start in range(len(specs)):
        if state[start]:
            continue
        path: list[int] = []
        stack: list[tuple[int, int]] = [(start, 0)]
        while stack:
            node, next_edge = stack.pop()
            if next_edge == 0:
                state[node] = 1
                path.append(node)
            targets = waits_for[node]
            if next_edge < len(targets):
                stack.append((node, next_edge + 1))
                target = targets[next_edge]
                if state[target] == 1:
                    cycle = [*path[path.index(target) :], target]
                    raise InvalidArgumentError(
                        "the batch's jobs wait for each other in a cycle: "
                        + " → ".join(f"job {n + 1}" for n in cycle)
                    )
                if state[target] == 0:
                    stack.append((target, 0))
                continue
            state[node] = 2
            path.pop()
            done.append(node)
    return done


def with_ids(spec: types_pb2.JobSpec, ids: Sequence[str]) -> types_pb2.JobSpec:
    """``spec`` with each ``@N`` of its dependencies replaced by the Nth job's id
    (``spec`` itself when it names none)."""
    if not references(spec):
        return spec
    resolved = types_pb2.JobSpec()
    resolved.CopyFrom(spec)
    for dependency in resolved.after:
        reference = batch_reference(dependency.job_id)
        if reference is not None:
            dependency.job_id = ids[reference - 1]
    return resolved
