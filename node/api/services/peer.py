"""NodeService: what nodes ask each other. Only callers with the node role get here."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import grpc

from murmur.node.agent.convert import dataset_message, timestamp
from murmur.node.agent.datasets import DatasetCatalog
from murmur.node.agent.executor import RunExecutor
from murmur.node.api.rpc.caller import current_caller
from murmur.node.api.rpc.status_map import status_for
from murmur.node.api.services.runs import list_runs, start_run, stop_run
from murmur.node.control.cluster_view import ClusterView
from murmur.node.control.consensus.errors import NotLeaderError
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.consensus.wire import WireError
from murmur.node.control.drain import NodeDrain
from murmur.node.control.queue.api_keys import ApiKeyTable, hashes_answer
from murmur.node.control.queue.audit_trail import AuditTrail
from murmur.node.control.queue.cluster_jobs import ClusterJobs
from murmur.node.control.queue.commands import (
    Command,
    CommandDecodeError,
    RecordAudit,
    decode,
    report_of,
)
from murmur.node.control.queue.proposal_forwarder import MAX_BATCH
from murmur.node.control.queue.protocol import PROTOCOL_LEVEL, entry_level
from murmur.node.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotServedError,
    PermissionDeniedError,
    UpgradeInProgressError,
)
from murmur.node.membership import MembershipRunner
from murmur.v1 import apikeys_pb2, cluster_pb2, node_pb2, node_pb2_grpc, types_pb2

Context = grpc.aio.ServicerContext[Any, Any]

MAX_REQUESTED_BY_CHARS = 256

_log = logging.getLogger("murmur.consensus")


def _outcome_message(outcome: types_pb2.Job | Exception) -> node_pb2.ProposeOutcome:
    """One command's answer in a Propose batch: its job, or the status it was refused with."""
    if isinstance(outcome, Exception):
        code, message = status_for(outcome)
        refusal = node_pb2.Refusal(code=code.value[0], message=message)
        return node_pb2.ProposeOutcome(refusal=refusal)
    return node_pb2.ProposeOutcome(job=outcome)


class PeerServicer(node_pb2_grpc.NodeServiceServicer):
    def __init__(
        self,
        *,
        view: ClusterView,
        drain: NodeDrain,
        membership: MembershipRunner | None,
        consensus: ConsensusRunner | None = None,
        cluster_jobs: ClusterJobs | None = None,
        executor: RunExecutor | None = None,
        audit_trail: AuditTrail | None = None,
        api_keys: Callable[[], ApiKeyTable] | None = None,
        datasets: DatasetCatalog | None = None,
    ) -> None:
        self._datasets = datasets
        self._audit_trail = audit_trail
        self._api_keys = api_keys
        self._view = view
        self._drain = drain
        self._membership = membership
        self._consensus = consensus
        self._cluster_jobs = cluster_jobs
        self._executor = executor

    async def Ping(self, request: node_pb2.PingRequest, context: Context) -> node_pb2.PingResponse:
        return node_pb2.PingResponse(
            node=self._view.local_name,
            sequence=request.sequence,
            time=timestamp(datetime.now(UTC)),
        )

    async def Gossip(
        self, request: node_pb2.GossipRequest, context: Context
    ) -> node_pb2.GossipResponse:
        if self._membership is None:
            raise NotServedError(f"gossip is not running on {self._view.local_name}")
        # Never fails for what the peer sent: an unusable message is logged and dropped.
        await self._membership.receive(request.from_address, request.payload)
        return node_pb2.GossipResponse()

    async def Raft(self, request: node_pb2.RaftRequest, context: Context) -> node_pb2.RaftResponse:
        if self._consensus is None:
            raise NotServedError(f"raft is not running on {self._view.local_name}")
        try:
            self._consensus.receive(request)
        except WireError as exc:
            raise InvalidArgumentError(str(exc)) from None
        return node_pb2.RaftResponse()

    async def RaftStream(
        self, request_iterator: AsyncIterator[node_pb2.RaftRequest], context: Context
    ) -> node_pb2.RaftResponse:
        # The interceptors checked the caller (a node certificate: RaftStream's
        # policy) before any message is read.
        if self._consensus is None:
            raise NotServedError(f"raft is not running on {self._view.local_name}")
        consensus = self._consensus
        undecodable = 0
        async for request in request_iterator:
            try:
                consensus.receive(request)
            except WireError as exc:
                undecodable += 1
                if undecodable == 1:  # once per stream: a newer peer may send many
                    _log.warning("dropped an undecodable raft message: %s", exc)
            if self._membership is not None and self._membership.leaving:
                break  # stopping: the server's graceful stop need not wait for us
        return node_pb2.RaftResponse()

    async def Propose(
        self, request: node_pb2.ProposeRequest, context: Context
    ) -> node_pb2.ProposeResponse:
        if len(request.commands) > MAX_BATCH:
            raise InvalidArgumentError(f"at most {MAX_BATCH} commands per call")
        outcomes: dict[int, types_pb2.Job | Exception] = {}
        for index, command in enumerate(request.commands):
            try:
                decoded = decode(command)  # only well-formed commands reach the log
            except CommandDecodeError as exc:
                outcomes[index] = (
                    # A newer node's, sent on a view of this one's level that was stale.
                    UpgradeInProgressError(
                        f"the leader {self._view.local_name} runs an older murmur (protocol "
                        f"{PROTOCOL_LEVEL}), which does not know this command: finish the "
                        "upgrade first"
                    )
                    if entry_level(command) > PROTOCOL_LEVEL
                    else InvalidArgumentError(f"not a control command: {exc}")
                )
                continue
            if (forged := _audit_of_another_node(decoded, current_caller().name)) is not None:
                outcomes[index] = forged
        well_formed = [i for i in range(len(request.commands)) if i not in outcomes]
        proposed = await self._queue().propose_here([request.commands[i] for i in well_formed])
        outcomes.update(zip(well_formed, proposed, strict=True))
        ordered = (outcomes[index] for index in range(len(request.commands)))
        return node_pb2.ProposeResponse(outcomes=[_outcome_message(o) for o in ordered])

    async def ReportRun(
        self, request: node_pb2.ReportRunRequest, context: Context
    ) -> node_pb2.ReportRunResponse:
        run = request.run
        try:
            report = report_of(run.job_id, current_caller().name, run)
        except ValueError as exc:  # a state this version does not know
            raise InvalidArgumentError(f"bad run report: {exc}") from None
        await self._queue().propose(report)
        return node_pb2.ReportRunResponse()

    async def StartRun(
        self, request: node_pb2.StartRunRequest, context: Context
    ) -> node_pb2.StartRunResponse:
        return await start_run(self._runs(), request)

    async def StopRun(
        self, request: node_pb2.StopRunRequest, context: Context
    ) -> node_pb2.StopRunResponse:
        return await stop_run(self._runs(), request)

    async def ListRuns(
        self, request: node_pb2.ListRunsRequest, context: Context
    ) -> node_pb2.ListRunsResponse:
        return await list_runs(self._runs(), request)

    async def ForgetVoter(
        self, request: node_pb2.ForgetVoterRequest, context: Context
    ) -> node_pb2.ForgetVoterResponse:
        if self._consensus is None:
            raise NotServedError(f"raft is not running on {self._view.local_name}")
        if not self._consensus.is_leader:
            raise NotLeaderError(
                self._consensus.raft.leader, f"{self._view.local_name} does not lead"
            )
        return node_pb2.ForgetVoterResponse(removed=self._consensus.forget_voter(request.name))

    # --- the audit trail, relayed by a node that holds no current copy --------------
    # (and _audit_of_another_node, below: a node ships only its own calls)

    def _trail(self) -> AuditTrail:
        if self._audit_trail is None:
            raise NotServedError(f"no audit trail is kept on {self._view.local_name}")
        return self._audit_trail

    async def ListAudit(
        self, request: cluster_pb2.ListAuditRequest, context: Context
    ) -> cluster_pb2.ListAuditResponse:
        return await self._trail().list_here(request)

    async def VerifyAudit(
        self, request: cluster_pb2.VerifyAuditRequest, context: Context
    ) -> cluster_pb2.VerifyAuditResponse:
        return await self._trail().verify_here()

    async def ListApiKeyHashes(
        self, request: apikeys_pb2.ListApiKeyHashesRequest, context: Context
    ) -> apikeys_pb2.ListApiKeyHashesResponse:
        """The key table for a router that follows no log (node/router/key_sync.py):
        only a voter's own is current enough to answer with."""
        if self._api_keys is None or self._consensus is None:
            raise NotServedError(f"API keys are not served by {self._view.local_name}")
        if not self._consensus.is_voter:
            raise FailedPreconditionError(
                f"{self._view.local_name} is no voter: ask the leader for the API key table"
            )
        return hashes_answer(self._api_keys(), request.known_revision)

    def _queue(self) -> ClusterJobs:
        if self._cluster_jobs is None:
            raise NotServedError(f"the job queue is not running on {self._view.local_name}")
        return self._cluster_jobs

    def _runs(self) -> RunExecutor:
        if self._executor is None:
            raise NotServedError(f"no runs are executed on {self._view.local_name}")
        return self._executor

    async def Describe(
        self, request: node_pb2.DescribeRequest, context: Context
    ) -> types_pb2.NodeInfo:
        return self._view.describe_local()

    async def RemoveDataset(
        self, request: node_pb2.RelayedRemoveDatasetRequest, context: Context
    ) -> types_pb2.Dataset:
        """A user's removal of a dataset held here, relayed by the node they reached
        (which checked their certificate): the same checks as one made here."""
        if self._datasets is None or self._executor is None:
            raise NotServedError(f"datasets are not served by {self._view.local_name}")
        if len(request.requested_by) > MAX_REQUESTED_BY_CHARS:
            raise InvalidArgumentError(
                f"requested_by is longer than {MAX_REQUESTED_BY_CHARS} characters"
            )
        record = await self._datasets.remove(
            request.name,
            requested_by=request.requested_by,
            is_admin=request.requested_by_admin,
            mounted_by=self._executor.jobs_mounting,
        )
        return dataset_message(record, self._view.local_name)

    async def SetDraining(
        self, request: node_pb2.SetDrainingRequest, context: Context
    ) -> types_pb2.NodeInfo:
        if len(request.requested_by) > MAX_REQUESTED_BY_CHARS:
            raise InvalidArgumentError(
                f"requested_by is longer than {MAX_REQUESTED_BY_CHARS} characters"
            )
        via = current_caller().name
        who = f"{request.requested_by} (via {via})" if request.requested_by else via
        if request.from_log:
            # The leader: the log holds this drain already; only the flag follows.
            return await self._drain.follow_log(
                request.draining, at_us=request.at_us, requested_by=request.requested_by or via
            )
        # Committed to the control log before the answer (NodeDrain.set).
        return await self._drain.set(request.draining, requested_by=who)


def _audit_of_another_node(command: Command, caller: str) -> PermissionDeniedError | None:
    """A node ships the calls it took itself: a RecordAudit naming another node (as
    its origin or as a call's node) is refused, so no node can write the trail in
    another's name."""
    if not isinstance(command, RecordAudit):
        return None
    if not command.origin.startswith(f"{caller}/") or any(
        call.node != caller for call in command.calls
    ):
        return PermissionDeniedError(f"{caller} may only record the calls it took itself")
    return None
