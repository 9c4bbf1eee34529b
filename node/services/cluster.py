"""ClusterService: the API users reach through the CLI, the client and ``murmur top``.

Nodes and datasets come from the cluster view (this node first-hand, the others
through gossip); jobs are this node's own until the replicated queue exists:
a job runs on the node it was submitted to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc

from certs import Role
from node.cluster_view import DOWN_STATES, ClusterView
from node.convert import (
    ROLE_FROM_PROTO,
    audit_message,
    dataset_message,
    event_message,
    identity_message,
    timestamp,
)
from node.datasets import DatasetCatalog
from node.drain import NodeDrain
from node.enrollment import Enrollment
from node.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from node.event_log import EventLog
from node.jobs import states as job_states
from node.jobs.logs import run_log_entries
from node.jobs.manager import JobManager
from node.local_node import VERSION
from node.membership import MembershipRunner
from node.peer_client import PeerClient
from node.rpc.caller import current_caller
from proto.murmur.v1 import cluster_pb2, cluster_pb2_grpc, types_pb2
from storage import DatasetRecord, Store

Context = grpc.aio.ServicerContext[Any, Any]

MAX_AUDIT_PAGE = 1000
MAX_JOBS_PAGE = 1000
DEFAULT_JOBS_PAGE = 100

_LOG_STREAMS = {
    "stdout": types_pb2.LOG_STREAM_STDOUT,
    "stderr": types_pb2.LOG_STREAM_STDERR,
    "system": types_pb2.LOG_STREAM_SYSTEM,
}


class ClusterServicer(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(
        self,
        *,
        view: ClusterView,
        store: Store,
        events: EventLog,
        enrollment: Enrollment,
        ca_fingerprint: str,
        jobs: JobManager,
        datasets: DatasetCatalog,
        drain: NodeDrain,
        membership: MembershipRunner | None,
        peers: PeerClient,
    ) -> None:
        self._view = view
        self._name = view.local_name
        self._drain = drain
        self._membership = membership
        self._peers = peers
        self._store = store
        self._events = events
        self._enrollment = enrollment
        self._ca_fingerprint = ca_fingerprint
        self._jobs = jobs
        self._datasets = datasets

    async def WhoAmI(
        self, request: cluster_pb2.WhoAmIRequest, context: Context
    ) -> cluster_pb2.WhoAmIResponse:
        return cluster_pb2.WhoAmIResponse(
            identity=identity_message(current_caller(), self._ca_fingerprint),
            node=self._name,
        )

    async def GetStatus(
        self, request: cluster_pb2.GetStatusRequest, context: Context
    ) -> cluster_pb2.ClusterStatus:
        nodes = self._view.nodes()
        up = [n for n in nodes if n.state not in DOWN_STATES]
        # Until the election exists, only a lone node leads (itself).
        alone = self._view.alone()
        return cluster_pb2.ClusterStatus(
            answered_by=self._name,
            leader=self._name if alone else "",
            term=0,
            voters=[self._name] if alone else [],
            nodes=nodes,
            gpus_total=sum(len(n.gpus.devices) for n in up),
            gpus_free=sum(n.load.gpus_free for n in up if n.state != types_pb2.NODE_STATE_DRAINING),
            gpus_simulated=any(n.gpus.source == types_pb2.GPU_SOURCE_SIMULATED for n in nodes),
            jobs_by_state=await self._store.count_jobs_by_state(),
            version=VERSION,
        )

    async def ListNodes(
        self, request: cluster_pb2.ListNodesRequest, context: Context
    ) -> cluster_pb2.ListNodesResponse:
        return cluster_pb2.ListNodesResponse(nodes=self._view.nodes())

    async def GetNode(
        self, request: cluster_pb2.GetNodeRequest, context: Context
    ) -> types_pb2.NodeInfo:
        node = self._view.node(request.name)
        if node is None:
            raise NotFoundError(f"no node named {request.name!r}")
        if request.name == self._name or node.state in DOWN_STATES:
            return node
        # Ask the node itself for what gossip leaves out (temperature, power, fresh
        # readings); gossip's verdict on its state and incarnation stands.
        fresh = await self._peers.describe(node.address)
        if fresh is None or fresh.name != node.name:
            return node
        if node.state not in (types_pb2.NODE_STATE_ALIVE, types_pb2.NODE_STATE_DRAINING):
            fresh.state = node.state  # suspect: the node's own "alive" does not settle it
        fresh.incarnation = node.incarnation
        return fresh

    async def WatchNodes(
        self, request: cluster_pb2.WatchNodesRequest, context: Context
    ) -> AsyncIterator[types_pb2.NodeInfo]:
        async for node in self._view.watch():
            yield node

    async def DrainNode(
        self, request: cluster_pb2.DrainNodeRequest, context: Context
    ) -> types_pb2.NodeInfo:
        """Drains this node, or asks the named node to drain itself (it owns the flag)."""
        draining = not request.undrain
        admin = current_caller().name
        if not request.name or request.name == self._name:
            return await self._drain.set(draining, requested_by=admin)
        node = self._view.node(request.name)
        if node is None:
            raise NotFoundError(f"no node named {request.name!r}")
        if node.state in (*DOWN_STATES, types_pb2.NODE_STATE_SUSPECT):
            state = types_pb2.NodeState.Name(node.state).removeprefix("NODE_STATE_").lower()
            raise FailedPreconditionError(
                f"node {request.name} is {state}: it cannot be drained now"
            )
        return await self._peers.set_draining(
            node.address, node=request.name, draining=draining, requested_by=admin
        )

    async def RemoveNode(
        self, request: cluster_pb2.RemoveNodeRequest, context: Context
    ) -> cluster_pb2.RemoveNodeResponse:
        """Forgets a dead node cluster-wide; refuses a node that is up."""
        if self._membership is None:
            if request.name == self._name:
                raise FailedPreconditionError("a node cannot remove itself")
            raise NotFoundError(f"no node named {request.name!r}")
        removed = self._membership.force_leave(request.name)
        return cluster_pb2.RemoveNodeResponse(name=removed.name)

    async def WatchEvents(
        self, request: cluster_pb2.WatchEventsRequest, context: Context
    ) -> AsyncIterator[types_pb2.Event]:
        async for event in self._events.follow(since_id=request.since_id, subject=request.subject):
            yield event_message(event, self._name)

    async def ListAudit(
        self, request: cluster_pb2.ListAuditRequest, context: Context
    ) -> cluster_pb2.ListAuditResponse:
        if request.limit > MAX_AUDIT_PAGE:
            raise InvalidArgumentError(f"limit must be at most {MAX_AUDIT_PAGE}")
        records = await self._store.list_audit(
            limit=request.limit or 100,
            before_id=request.before_id or None,
            user=request.user or None,
        )
        return cluster_pb2.ListAuditResponse(
            records=[audit_message(record, self._name) for record in records]
        )

    async def CreateJoinToken(
        self, request: cluster_pb2.CreateJoinTokenRequest, context: Context
    ) -> cluster_pb2.CreateJoinTokenResponse:
        ttl = timedelta(seconds=request.ttl_seconds) if request.ttl_seconds else None
        token, expires_at = await self._enrollment.create_join_token(
            created_by=current_caller().name, ttl=ttl
        )
        return cluster_pb2.CreateJoinTokenResponse(
            token=token.encode(), expires_at=timestamp(expires_at), token_id=token.token_id
        )

    async def IssueUserCertificate(
        self, request: cluster_pb2.IssueUserCertificateRequest, context: Context
    ) -> cluster_pb2.IssueUserCertificateResponse:
        role = ROLE_FROM_PROTO.get(request.role)
        if role is None:
            raise InvalidArgumentError("role must be admin, member or viewer")
        issued = await self._enrollment.issue_user_certificate(
            name=request.name, role=role, csr_pem=request.csr_pem, ttl_days=request.ttl_days
        )
        return cluster_pb2.IssueUserCertificateResponse(
            certificate_pem=issued.certificate_pem, ca_certificate_pem=issued.ca_certificate_pem
        )

    # ------------------------------------------------------------------ jobs

    async def SubmitJob(
        self, request: cluster_pb2.SubmitJobRequest, context: Context
    ) -> types_pb2.Job:
        return await self._jobs.submit(
            request.spec, user=current_caller().name, idempotency_key=request.idempotency_key
        )

    async def GetJob(self, request: cluster_pb2.GetJobRequest, context: Context) -> types_pb2.Job:
        return await self._jobs.describe(request.id)

    async def ListJobs(
        self, request: cluster_pb2.ListJobsRequest, context: Context
    ) -> cluster_pb2.ListJobsResponse:
        if request.limit > MAX_JOBS_PAGE:
            raise InvalidArgumentError(f"limit must be at most {MAX_JOBS_PAGE}")
        try:
            after = int(request.page_token) if request.page_token else 0
            wanted = tuple(job_states.from_proto(state) for state in request.states)
        except ValueError as exc:
            raise InvalidArgumentError(f"bad request: {exc}") from None
        limit = request.limit or DEFAULT_JOBS_PAGE
        page = await self._jobs.list_jobs(
            states_filter=wanted, user=request.user or None, queue=request.queue or None,
            after_order=after, limit=limit,
        )  # fmt: skip
        token = str(page[-1][0].submit_order) if len(page) == limit else ""
        return cluster_pb2.ListJobsResponse(jobs=[job for _, job in page], next_page_token=token)

    async def CancelJob(
        self, request: cluster_pb2.CancelJobRequest, context: Context
    ) -> types_pb2.Job:
        caller = current_caller()
        return await self._jobs.cancel(
            request.id, user=caller.name, is_admin=caller.role is Role.ADMIN, reason=request.reason
        )

    async def WatchJobs(
        self, request: cluster_pb2.WatchJobsRequest, context: Context
    ) -> AsyncIterator[types_pb2.Job]:
        try:
            wanted = {job_states.to_proto(job_states.from_proto(s)) for s in request.states}
        except ValueError as exc:
            raise InvalidArgumentError(f"bad request: {exc}") from None

        def matches(job: types_pb2.Job) -> bool:
            return (
                (not wanted or job.state in wanted)
                and (not request.user or job.user == request.user)
                and (not request.queue or job.spec.queue == request.queue)
            )

        async with self._jobs.watch() as updates:
            after = 0
            while True:
                page = await self._jobs.list_jobs(
                    states_filter=(), user=request.user or None, queue=request.queue or None,
                    after_order=after, limit=MAX_JOBS_PAGE,
                )  # fmt: skip
                for record, job in page:
                    after = record.submit_order
                    if matches(job):
                        yield job
                if len(page) < MAX_JOBS_PAGE:
                    break
            while True:
                job = await updates.get()
                if matches(job):
                    yield job

    async def StreamLogs(
        self, request: cluster_pb2.StreamLogsRequest, context: Context
    ) -> AsyncIterator[types_pb2.LogLine]:
        run_id = request.run_id or await self._latest_run(request.job_id, wait=request.follow)
        if not run_id:
            return
        run = await self._store.get_run(run_id)
        if run.job_id != request.job_id and request.job_id:
            raise NotFoundError(f"job {request.job_id} has no run {run_id}")
        files = self._jobs.files_of(run_id)
        async for entry in run_log_entries(
            files.log_dir,
            from_offset=request.from_offset,
            tail_lines=request.tail_lines,
            follow=request.follow,
            run_ended=lambda: not self._jobs.run_is_active(run_id),
        ):
            line = types_pb2.LogLine(
                run_id=run_id,
                stream=_LOG_STREAMS.get(entry.stream, types_pb2.LOG_STREAM_UNSPECIFIED),
                text=entry.text,
                offset=entry.offset,
            )
            line.time.FromNanoseconds(int(entry.time * 1e9))
            yield line

    async def _latest_run(self, job_id: str, *, wait: bool) -> str:
        """The job's newest run; with ``wait``, waits for a pending job's first run."""
        while True:
            job = await self._jobs.describe(job_id)
            if job.runs:
                return job.runs[-1].id
            if not wait or job.state not in (
                types_pb2.JOB_STATE_PENDING,
                types_pb2.JOB_STATE_SCHEDULED,
                types_pb2.JOB_STATE_STARTING,
            ):
                return ""
            await asyncio.sleep(0.2)

    # -------------------------------------------------------------- datasets

    async def AddDataset(
        self, request: cluster_pb2.AddDatasetRequest, context: Context
    ) -> types_pb2.Dataset:
        record = await self._datasets.add(
            name=request.name, path=request.path, added_by=current_caller().name
        )
        return dataset_message(record, self._name)

    async def AddDatasetWithProgress(
        self, request: cluster_pb2.AddDatasetRequest, context: Context
    ) -> AsyncIterator[cluster_pb2.AddDatasetProgress]:
        adding = self._datasets.add_with_progress(
            name=request.name, path=request.path, added_by=current_caller().name
        )
        async with contextlib.aclosing(adding) as updates:
            async for update in updates:
                if isinstance(update, DatasetRecord):
                    yield cluster_pb2.AddDatasetProgress(
                        dataset=dataset_message(update, self._name)
                    )
                    continue
                yield cluster_pb2.AddDatasetProgress(
                    scan=cluster_pb2.DatasetScanProgress(
                        listing=update.listing,
                        files_total=update.files_total,
                        bytes_total=update.bytes_total,
                        files_scanned=update.files_scanned,
                        bytes_scanned=update.bytes_scanned,
                        current_path=update.current_path,
                    )
                )

    async def ListDatasets(
        self, request: cluster_pb2.ListDatasetsRequest, context: Context
    ) -> cluster_pb2.ListDatasetsResponse:
        return cluster_pb2.ListDatasetsResponse(datasets=self._view.datasets(request.node))

    async def GetDataset(
        self, request: cluster_pb2.GetDatasetRequest, context: Context
    ) -> types_pb2.Dataset:
        dataset = self._view.dataset(request.name)
        if dataset is None:
            raise NotFoundError(f"no dataset named {request.name!r} on any node")
        return dataset
