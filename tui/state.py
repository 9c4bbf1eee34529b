"""Everything the dashboard knows, as the watch streams last told it.

The streams only write here and bump revisions; views read on the app's refresh
tick. That decoupling is what batches updates: a burst of 500 job changes costs
one repaint, not 500.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from murmur.tui.format import ACTIVE_JOB_STATES, GONE_NODE_STATES
from murmur.tui.history import TelemetryHistory
from murmur.v1 import types_pb2


@dataclass(frozen=True)
class GpuHolder:
    job_id: str
    user: str
    job_name: str


@dataclass
class ClusterState:
    nodes: dict[str, types_pb2.NodeInfo] = field(default_factory=dict)
    jobs: dict[str, types_pb2.Job] = field(default_factory=dict)
    history: TelemetryHistory = field(default_factory=TelemetryHistory)
    revision: int = 0
    """Grows with every change; a view compares it with the revision it last showed."""
    node_revisions: dict[str, int] = field(default_factory=dict)
    job_revisions: dict[str, int] = field(default_factory=dict)
    service_news: int = 0
    """Grows when the streams tell of a change to some service's replicas: a replica's
    job, or a node's endpoints (the replicas' ports and readiness) or its state.
    Services have no watch stream; the services view reads them again when this moves."""
    _holders: dict[tuple[str, int], GpuHolder] = field(default_factory=dict)
    _held_by_job: dict[str, list[tuple[str, int]]] = field(default_factory=dict)

    def apply_node(self, node: types_pb2.NodeInfo) -> None:
        if _changes_endpoints(self.nodes.get(node.name), node):
            self.service_news += 1
        self.revision += 1
        self.nodes[node.name] = node
        self.node_revisions[node.name] = self.revision
        self.history.record(node)

    def apply_job(self, job: types_pb2.Job, *, unless_older: bool = False) -> None:
        """Takes `job` as its latest state.

        Args:
            unless_older: Skip it if what the streams already brought is newer. An
                action's answer (CancelJob's "stopping") can arrive after the stream
                told of the end ("cancelled"); it must not undo that.
        """
        held = self.jobs.get(job.id)
        stamp = job.updated_at.ToNanoseconds()
        if unless_older and held is not None and stamp < held.updated_at.ToNanoseconds():
            return
        self.revision += 1
        if job.spec.HasField("replica_of"):
            self.service_news += 1
        self.jobs[job.id] = job
        self.job_revisions[job.id] = self.revision
        self._index_holders(job)

    def reset(self) -> None:
        """Forgets streamed state (after a reconnect the streams send it all again),
        keeping the telemetry history so sparklines survive a failover."""
        self.revision += 1
        self.service_news += 1
        self.nodes.clear()
        self.jobs.clear()
        self._holders.clear()
        self._held_by_job.clear()
        self.node_revisions.clear()
        self.job_revisions.clear()

    def jobs_changed_since(self, revision: int) -> list[str]:
        return [job_id for job_id, rev in self.job_revisions.items() if rev > revision]

    def nodes_changed_since(self, revision: int) -> list[str]:
        return [name for name, rev in self.node_revisions.items() if rev > revision]

    def holder(self, node: str, index: int) -> GpuHolder | None:
        """The job (and its user) holding GPU `index` of `node`, if any."""
        return self._holders.get((node, index))

    def leader(self) -> str:
        """The leader the attached node names (it marks one node, and marks again when
        that changes); a gone node's flag, or an older term's, is never taken."""
        claims = [
            (node.term, name)
            for name, node in self.nodes.items()
            if node.leader and node.state not in GONE_NODE_STATES
        ]
        return max(claims, default=(0, ""))[1]

    def _index_holders(self, job: types_pb2.Job) -> None:
        for key in self._held_by_job.pop(job.id, []):
            self._holders.pop(key, None)
        if job.state not in ACTIVE_JOB_STATES:
            return
        held: list[tuple[str, int]] = []
        holder = GpuHolder(job_id=job.id, user=job.user, job_name=job.spec.name)
        for run in job.runs:
            if run.state in ACTIVE_JOB_STATES:
                for index in run.gpu_indices:
                    key = (run.node, index)
                    self._holders[key] = holder
                    held.append(key)
        if held:
            self._held_by_job[job.id] = held


def _changes_endpoints(held: types_pb2.NodeInfo | None, node: types_pb2.NodeInfo) -> bool:
    """Whether `node` changes what the cluster says of the replicas it runs: their
    endpoints, or (as a gone node's replicas stop counting as ready) its state. A new
    telemetry sample alone, the stream's most frequent news, changes nothing."""
    if held is None:
        return len(node.endpoints) > 0
    if not held.endpoints and not node.endpoints:
        return False
    return held.state != node.state or list(held.endpoints) != list(node.endpoints)
