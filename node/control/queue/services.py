"""Services in the control state: long-running replicas of one job spec.

A service's replicas are jobs of the queue, one per slot, made by the entry that
creates (or scales up) the service, so everything jobs have — placement, quotas,
tiers, dispatch, leases, logs, preemption — replicas have too. What makes them a
service's is ``JobSpec.replica_of`` and this record, which names the job that is each
slot's replica. A replica's run that ends is not the replica's end: the state puts
its job back in the queue (``restart_backoff_us`` after a run that crashed quickly),
unless the service restarts only on failure and the run succeeded, or the replica
was scaled away or its service deleted (then the job is cancelled).
"""

from __future__ import annotations

from dataclasses import dataclass

from murmur.node.jobspec.services import RESTART_ON_FAILURE
from murmur.v1 import types_pb2

SERVICE_LABEL = "murmur.service"
"""The label every replica job carries: its service's name."""


HEALTHY_RUN_US = 600_000_000
"""A replica's run that lasted this long was healthy: its restart waits only the
first backoff step, however often it restarted before."""


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """A service as the log holds it.

    Attributes:
        spec: what the user asked for (validated), replicas included.
        user: its owner; its replicas are their jobs.
        created_at_us: when it was created.
        created_index: the log index of its CreateService entry (replica job ids
            carry it, so a service created again under the same name never reuses
            the ids of the first one's jobs).
        replica_jobs: the job that is each slot's replica, by slot.
    """

    spec: types_pb2.ServiceSpec
    user: str
    created_at_us: int
    created_index: int
    replica_jobs: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.spec.name


def replica_models(spec: types_pb2.ServiceSpec) -> list[str]:
    """The names a replica answers to: its model, its aliases, and ``model:adapter``
    for each adapter."""
    names = [spec.model, *spec.aliases]
    names.extend(f"{spec.model}:{adapter}" for adapter in sorted(spec.adapters))
    return names


def replica_spec(spec: types_pb2.ServiceSpec, slot: int) -> types_pb2.JobSpec:
    """The job spec of ``spec``'s replica in ``slot``."""
    job = types_pb2.JobSpec()
    job.CopyFrom(spec.template)
    job.name = job.name or f"{spec.name}/{slot}"
    job.labels[SERVICE_LABEL] = spec.name
    job.replica_of.service = spec.name
    job.replica_of.slot = slot
    job.replica_of.models.extend(replica_models(spec))
    job.replica_of.readiness.CopyFrom(spec.readiness)
    return job


def replica_job_id(record: ServiceRecord, slot: int, index: int) -> str:
    """The id of a replica job made at log ``index`` (unique: one per slot per entry)."""
    return f"{record.name}-{record.created_index}-{slot}-{index}"


def restarts(record: ServiceRecord, run_state: str) -> bool:
    """Whether a replica whose run ended in ``run_state`` runs again."""
    return record.spec.restart != RESTART_ON_FAILURE or run_state != "succeeded"
