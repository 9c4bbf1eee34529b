"""ClusterService: the API users reach through the CLI, the client and ``murmur top``.

This node answers from what it knows itself. Membership (other nodes), the
replicated job queue and datasets are served by the parts that own them as
they arrive; RPCs of the contract that no part serves yet answer UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc

from node.convert import ROLE_FROM_PROTO, audit_message, event_message, identity_message, timestamp
from node.enrollment import Enrollment
from node.errors import InvalidArgumentError, NotFoundError, NotServedError
from node.event_log import EventLog
from node.local_node import VERSION, LocalNode
from node.rpc.caller import current_caller
from proto.murmur.v1 import cluster_pb2, cluster_pb2_grpc, types_pb2
from storage import Store

Context = grpc.aio.ServicerContext[Any, Any]

MAX_AUDIT_PAGE = 1000


async def _refusing_stream(error: Exception) -> AsyncIterator[Any]:
    """A server stream that fails with ``error`` before sending anything."""
    raise error
    yield  # unreachable; makes this an async generator


class ClusterServicer(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(
        self,
        *,
        local: LocalNode,
        store: Store,
        events: EventLog,
        enrollment: Enrollment,
        ca_fingerprint: str,
    ) -> None:
        self._local = local
        self._store = store
        self._events = events
        self._enrollment = enrollment
        self._ca_fingerprint = ca_fingerprint

    async def WhoAmI(
        self, request: cluster_pb2.WhoAmIRequest, context: Context
    ) -> cluster_pb2.WhoAmIResponse:
        return cluster_pb2.WhoAmIResponse(
            identity=identity_message(current_caller(), self._ca_fingerprint),
            node=self._local.name,
        )

    def _nodes(self) -> list[types_pb2.NodeInfo]:
        return [self._local.describe()]

    async def GetStatus(
        self, request: cluster_pb2.GetStatusRequest, context: Context
    ) -> cluster_pb2.ClusterStatus:
        nodes = self._nodes()
        return cluster_pb2.ClusterStatus(
            answered_by=self._local.name,
            leader=self._local.name,
            term=0,
            voters=[self._local.name],
            nodes=nodes,
            gpus_total=sum(len(n.gpus.devices) for n in nodes),
            gpus_free=sum(n.load.gpus_free for n in nodes),
            gpus_simulated=any(n.gpus.source == types_pb2.GPU_SOURCE_SIMULATED for n in nodes),
            version=VERSION,
        )

    async def ListNodes(
        self, request: cluster_pb2.ListNodesRequest, context: Context
    ) -> cluster_pb2.ListNodesResponse:
        return cluster_pb2.ListNodesResponse(nodes=self._nodes())

    async def GetNode(
        self, request: cluster_pb2.GetNodeRequest, context: Context
    ) -> types_pb2.NodeInfo:
        for node in self._nodes():
            if node.name == request.name:
                return node
        raise NotFoundError(f"no node named {request.name!r}")

    async def WatchNodes(
        self, request: cluster_pb2.WatchNodesRequest, context: Context
    ) -> AsyncIterator[types_pb2.NodeInfo]:
        async with self._local.updates.subscribe() as updates:
            for node in self._nodes():
                yield node
            while True:
                yield await updates.get()

    async def WatchEvents(
        self, request: cluster_pb2.WatchEventsRequest, context: Context
    ) -> AsyncIterator[types_pb2.Event]:
        async for event in self._events.follow(since_id=request.since_id, subject=request.subject):
            yield event_message(event, self._local.name)

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
            records=[audit_message(record, self._local.name) for record in records]
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

    # RPCs of the contract served by parts still to come: the job queue and
    # runtimes, datasets, and membership changes. They answer UNIMPLEMENTED
    # with the reason rather than pretending.
    def _not_served(self, rpc: str, part: str) -> NotServedError:
        return NotServedError(f"{rpc} needs {part}, which this version of murmur does not have yet")

    async def SubmitJob(self, request: cluster_pb2.SubmitJobRequest, context: Context) -> Any:
        raise self._not_served("SubmitJob", "the job queue")

    async def ListJobs(self, request: cluster_pb2.ListJobsRequest, context: Context) -> Any:
        raise self._not_served("ListJobs", "the job queue")

    async def GetJob(self, request: cluster_pb2.GetJobRequest, context: Context) -> Any:
        raise self._not_served("GetJob", "the job queue")

    async def CancelJob(self, request: cluster_pb2.CancelJobRequest, context: Context) -> Any:
        raise self._not_served("CancelJob", "the job queue")

    def WatchJobs(
        self, request: cluster_pb2.WatchJobsRequest, context: Context
    ) -> AsyncIterator[types_pb2.Job]:
        return _refusing_stream(self._not_served("WatchJobs", "the job queue"))

    def StreamLogs(
        self, request: cluster_pb2.StreamLogsRequest, context: Context
    ) -> AsyncIterator[types_pb2.LogLine]:
        return _refusing_stream(self._not_served("StreamLogs", "the job runtimes"))

    async def AddDataset(self, request: cluster_pb2.AddDatasetRequest, context: Context) -> Any:
        raise self._not_served("AddDataset", "datasets")

    async def ListDatasets(self, request: cluster_pb2.ListDatasetsRequest, context: Context) -> Any:
        raise self._not_served("ListDatasets", "datasets")

    async def GetDataset(self, request: cluster_pb2.GetDatasetRequest, context: Context) -> Any:
        raise self._not_served("GetDataset", "datasets")

    async def DrainNode(self, request: cluster_pb2.DrainNodeRequest, context: Context) -> Any:
        raise self._not_served("DrainNode", "gossip membership")

    async def RemoveNode(self, request: cluster_pb2.RemoveNodeRequest, context: Context) -> Any:
        raise self._not_served("RemoveNode", "gossip membership")
