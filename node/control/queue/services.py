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

from collections.abc import Collection
from dataclasses import dataclass

from murmur.node.control.queue.records import ClusterJob
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
        revision: 1, then one more for each update of its spec; a replica made from
            an older revision is replaced by the leader (``RollReplica``).
    """

    spec: types_pb2.ServiceSpec
    user: str
    created_at_us: int
    created_index: int
    replica_jobs: tuple[str, ...]
    revision: int = 1

    @property
    def name(self) -> str:
        return self.spec.name


def replica_models(spec: types_pb2.ServiceSpec) -> list[str]:
    """The names a replica answers to: its model, its aliases, and ``model:adapter``
    for each adapter."""
    names = [spec.model, *spec.aliases]
    names.extend(f"{spec.model}:{adapter}" for adapter in sorted(spec.adapters))
    return names


def replica_spec(spec: types_pb2.ServiceSpec, slot: int, revision: int = 1) -> types_pb2.JobSpec:
    """The job spec of ``spec``'s replica in ``slot``, made from its ``revision``."""
    job = types_pb2.JobSpec()
    job.CopyFrom(spec.template)
    job.name = job.name or f"{spec.name}/{slot}"
    job.labels[SERVICE_LABEL] = spec.name
    job.replica_of.service = spec.name
    job.replica_of.slot = slot
    job.replica_of.models.extend(replica_models(spec))
    job.replica_of.readiness.CopyFrom(spec.readiness)
    job.replica_of.port_name = spec.port_name
    if revision > 1:  # revision 1 stays unset: the bytes versions before revisions make
        job.replica_of.revision = revision
    if spec.HasField("liveness"):
        job.replica_of.liveness.CopyFrom(spec.liveness)
    return job


def replica_revision(job: types_pb2.JobSpec) -> int:
    """The revision of its service a replica's job was made from (1 for one made
    before services had revisions)."""
    return job.replica_of.revision or 1


def outdated(record: ServiceRecord, job: ClusterJob, drained: Collection[str]) -> bool:
    """Whether replica ``job`` is to be replaced (node/control/leader/rollout.py):
    made from an older revision of its service, or running on a drained node."""
    if replica_revision(job.spec) < record.revision:
        return True
    return any(rank.node in drained for rank in job.live_runs) if drained else False


def replica_job_id(record: ServiceRecord, slot: int, index: int) -> str:
    """The id of a replica job made at log ``index`` (unique: one per slot per entry)."""
    return f"{record.name}-{record.created_index}-{slot}-{index}"


def restarts(record: ServiceRecord, run_state: str) -> bool:
    """Whether a replica whose run ended in ``run_state`` runs again."""
    return record.spec.restart != RESTART_ON_FAILURE or run_state != "succeeded"
