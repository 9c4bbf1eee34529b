"""ClusterService: the API users reach through the CLI, the client and ``murmur top``.

Nodes and datasets come from the cluster view (this node first-hand, the others
through gossip); jobs come from the replicated queue, through the leader
(:mod:`murmur.node.control.queue.cluster_jobs`), and a job's logs from the node that runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any

import grpc
import grpc.aio

from murmur.certs import CertificateIdentity, Role
from murmur.node.agent.convert import (
    ROLE_FROM_PROTO,
    audit_message,
    dataset_message,
    event_message,
    identity_message,
    timestamp,
)
from murmur.node.agent.datasets import DatasetCatalog
from murmur.node.agent.executor import RunExecutor
from murmur.node.agent.run_logs import run_log_entries
from murmur.node.agent.runtimes.base import RunFiles
from murmur.node.api.peer_client import PeerClient
from murmur.node.api.rpc.caller import current_caller
from murmur.node.api.services.api_keys import ApiKeyCalls
from murmur.node.api.services.job_visibility import check_may_read_output, visible_job
from murmur.node.api.services.revocations import RevocationCalls
from murmur.node.control.cluster_view import DOWN_STATES, ClusterView
from murmur.node.control.consensus.leadership import mark_roles
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.drain import NodeDrain
from murmur.node.control.queue.audit_trail import AuditTrail
from murmur.node.control.queue.cluster_jobs import ClusterJobs, refused_by_peer
from murmur.node.control.queue.commands import (
    MAX_BATCH_JOBS,
    CancelJob,
    CreateService,
    DeleteService,
    ScaleService,
    SetLabPolicy,
    SubmitJob,
    SubmitJobs,
    UpdateService,
)
from murmur.node.control.queue.job_listing import parse_page_token
from murmur.node.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    NotServedError,
    PeerRefusedError,
    UnavailableError,
)
from murmur.node.event_log import EventLog
from murmur.node.identity.enrollment import Enrollment
from murmur.node.jobspec import states as job_states
from murmur.node.jobspec.arrays import split_task_id, task_indices
from murmur.node.jobspec.batches import batch_job_id, batch_order, with_ids
from murmur.node.jobspec.services import MAX_REPLICAS, validate_service_spec
from murmur.node.jobspec.validation import check_idempotency_key, check_reason, validate_job_spec
from murmur.node.local_node import VERSION
from murmur.node.membership import MembershipRunner
from murmur.node.membership.transport import PeerTransport
from murmur.scheduler.lab_policy import PolicyError, parse_policy
from murmur.storage import DatasetRecord, Store
from murmur.v1 import apikeys_pb2, cluster_pb2, cluster_pb2_grpc, node_pb2, types_pb2

Context = grpc.aio.ServicerContext[Any, Any]

MAX_AUDIT_PAGE = 1000
MAX_JOBS_PAGE = 1000
DEFAULT_JOBS_PAGE = 100

RUN_START_POLL_SECONDS = 0.2
"""How often ``job logs -f`` looks whether a run placed on this node has started."""

ENDED_RUN_STATES = frozenset(job_states.to_proto(state) for state in job_states.TERMINAL)

_LOG_STREAMS = {
    "stdout": types_pb2.LOG_STREAM_STDOUT,
    "stderr": types_pb2.LOG_STREAM_STDERR,
    "system": types_pb2.LOG_STREAM_SYSTEM,
}


CaRotator = Callable[[cluster_pb2.RotateCaRequest, str], Awaitable[cluster_pb2.RotateCaResponse]]
"""Starts or finishes a CA rotation for an admin (``ClusterTrust.rotate``)."""


class ClusterServicer(cluster_pb2_grpc.ClusterServiceServicer):
    def __init__(
        self,
        *,
        view: ClusterView,
        store: Store,
        events: EventLog,
        enrollment: Enrollment,
        ca_fingerprint: Callable[[], str],
        executor: RunExecutor,
        cluster_jobs: ClusterJobs,
        path_roots: Collection[PurePosixPath] = (),
        datasets: DatasetCatalog,
        drain: NodeDrain,
        membership: MembershipRunner | None,
        peers: PeerClient,
        peer_channels: PeerTransport,
        consensus: ConsensusRunner | None = None,
        revocations: RevocationCalls | None = None,
        audit_trail: AuditTrail | None = None,
        rotate_ca: CaRotator | None = None,
        api_keys: ApiKeyCalls | None = None,
    ) -> None:
        self._api_keys = api_keys
        self._audit_trail = audit_trail
        self._rotate_ca = rotate_ca
        self._revocations = revocations
        self._view = view
        self._consensus = consensus
        self._name = view.local_name
        self._drain = drain
        self._membership = membership
        self._peers = peers
        self._peer_channels = peer_channels
        self._store = store
        self._events = events
        self._enrollment = enrollment
        self._ca_fingerprint = ca_fingerprint
        self._executor = executor
        self._cluster_jobs = cluster_jobs
        self._path_roots = path_roots
        self._datasets = datasets

    async def WhoAmI(
        self, request: cluster_pb2.WhoAmIRequest, context: Context
    ) -> cluster_pb2.WhoAmIResponse:
        return cluster_pb2.WhoAmIResponse(
            identity=identity_message(current_caller(), self._ca_fingerprint()),
            node=self._name,
        )

    async def GetStatus(
        self, request: cluster_pb2.GetStatusRequest, context: Context
    ) -> cluster_pb2.ClusterStatus:
        # Counts first: they may wait on the leader, and the rest must be as of the answer.
        jobs_by_state = await self._cluster_jobs.counts()
        # One look: the leader and voters named are those the node list's roles show.
        nodes, leadership = self._view.snapshot()
        up = [n for n in nodes if n.state not in DOWN_STATES]
        return cluster_pb2.ClusterStatus(
            answered_by=self._name,
            leader=leadership.leader,
            term=leadership.term,
            voters=leadership.voters,
            nodes=nodes,
            gpus_total=sum(len(n.gpus.devices) for n in up),
            gpus_free=sum(n.load.gpus_free for n in up if n.state != types_pb2.NODE_STATE_DRAINING),
            gpus_simulated=any(n.gpus.source == types_pb2.GPU_SOURCE_SIMULATED for n in nodes),
            jobs_by_state=jobs_by_state,
            # This node's as it gossips it (a simulated older version says so).
            version=next((n.version for n in nodes if n.name == self._name), VERSION),
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
        mark_roles([fresh], self._view.leadership())  # roles as a status here names them
        return fresh

    async def WatchNodes(
        self, request: cluster_pb2.WatchNodesRequest, context: Context
    ) -> AsyncIterator[types_pb2.NodeInfo]:
        async for node in self._view.watch():
            yield node

    async def DrainNode(
        self, request: cluster_pb2.DrainNodeRequest, context: Context
    ) -> types_pb2.NodeInfo:
        """Drains this node, or asks the named node to drain itself. Either way the
        node commits the drain to the control log before it answers (node/control/drain.py),
        so once this returns the leader places nothing new there."""
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
        """Forgets a dead node cluster-wide and revokes its certificates (it cannot come
        back with them); refuses a node that is up."""
        if self._membership is None:
            if request.name == self._name:
                raise FailedPreconditionError("a node cannot remove itself")
            raise NotFoundError(f"no node named {request.name!r}")
        removed = self._membership.force_leave(request.name)
        await self._revoke_removed(request.name)
        await self._forget_voter(request.name)
        return cluster_pb2.RemoveNodeResponse(name=removed.name)

    async def _forget_voter(self, name: str) -> None:
        """Take a removed node out of the voters: here when this node leads, else
        through the leader. Best effort: without a leader now, the leader to come
        replaces the dead voter by itself after the stabilization time."""
        consensus = self._consensus
        if consensus is None or name not in consensus.raft.voters:
            return
        if consensus.is_leader:
            consensus.forget_voter(name)
            return
        address = consensus.leader_address()
        if address is None:
            return
        with contextlib.suppress(grpc.aio.AioRpcError):
            await self._peer_channels.node_stub(address).ForgetVoter(
                node_pb2.ForgetVoterRequest(name=name), timeout=5.0
            )

    async def WatchEvents(
        self, request: cluster_pb2.WatchEventsRequest, context: Context
    ) -> AsyncIterator[types_pb2.Event]:
        if request.subject and await self._is_job(request.subject):
            # A job's story is the cluster's, kept by the queue, wherever it ran.
            stream = self._cluster_jobs.job_events(request.subject, request.since_id)
            async with contextlib.aclosing(stream) as job_events:
                async for job_event in job_events:
                    yield job_event
            return
        async for event in self._events.follow(since_id=request.since_id, subject=request.subject):
            yield event_message(event, self._name)

    async def _is_job(self, subject: str) -> bool:
        try:
            await self._cluster_jobs.get(subject)
        except NotFoundError:
            return False
        except PeerRefusedError as exc:
            if exc.code is grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def ListAudit(
        self, request: cluster_pb2.ListAuditRequest, context: Context
    ) -> cluster_pb2.ListAuditResponse:
        if self._audit_trail is not None:  # the cluster's trail, as the leader holds it
            return await self._audit_trail.list(request)
        # No cluster trail wired (a bare servicer): this node's own outbox.
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

    async def VerifyAudit(
        self, request: cluster_pb2.VerifyAuditRequest, context: Context
    ) -> cluster_pb2.VerifyAuditResponse:
        if self._audit_trail is None:
            raise NotImplementedError("this node keeps no cluster audit trail")
        return await self._audit_trail.verify()

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
            name=request.name,
            role=role,
            csr_pem=request.csr_pem,
            ttl_days=request.ttl_days,
            requested_by=current_caller().name,
        )
        return cluster_pb2.IssueUserCertificateResponse(
            certificate_pem=issued.certificate_pem, ca_certificate_pem=issued.ca_certificate_pem
        )

    # ------------------------------------------------------------------ jobs

    async def SubmitJob(
        self, request: cluster_pb2.SubmitJobRequest, context: Context
    ) -> types_pb2.Job:
        # The cluster's datasets, only when asked for: listing them describes every node.
        known = {d.name for d in self._view.datasets()} if request.spec.datasets else set()
        validated = validate_job_spec(
            request.spec, known_datasets=known, path_roots=self._path_roots
        )
        check_idempotency_key(request.idempotency_key)
        job_id = uuid.uuid4().hex[:12]
        submitted = await self._cluster_jobs.propose(
            SubmitJob(
                job_id=job_id,
                spec=validated.spec,
                user=current_caller().name,
                # Without a client key, a forward retried after a lost answer must
                # still find the first one: the node makes one up.
                idempotency_key=request.idempotency_key[:128] or f"~{job_id}",
                submitted_at_us=time.time_ns() // 1000,
            )
        )
        split = split_task_id(submitted.id) if validated.spec.HasField("array") else None
        if split is not None:
            # An array: its first task came back; the answer is the whole array.
            submitted = await self._cluster_jobs.get(split[0])
        return visible_job(submitted, current_caller())

    async def SubmitJobs(
        self, request: cluster_pb2.SubmitJobsRequest, context: Context
    ) -> cluster_pb2.SubmitJobsResponse:
        """Every job of the batch in one entry of the control log (node/jobspec/batches.py)."""
        count = len(request.jobs)
        if not 0 < count <= MAX_BATCH_JOBS:
            raise InvalidArgumentError(f"a batch has 1 to {MAX_BATCH_JOBS} jobs, not {count}")
        caller = current_caller()
        wants_datasets = any(job.spec.datasets for job in request.jobs)
        known = {d.name for d in self._view.datasets()} if wants_datasets else set()
        specs: list[types_pb2.JobSpec] = []
        keys: list[str] = []
        for number, job in enumerate(request.jobs, 1):
            try:
                check_idempotency_key(job.idempotency_key)
                validated = validate_job_spec(
                    job.spec, known_datasets=known, path_roots=self._path_roots,
                    batch_size=count,
                )  # fmt: skip
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(f"job {number}: {exc}") from None
            specs.append(validated.spec)
            keys.append(job.idempotency_key[:128] or f"~{uuid.uuid4().hex}")
        ids = [batch_job_id(caller.name, key) for key in keys]
        at_us = time.time_ns() // 1000
        await self._cluster_jobs.propose(
            SubmitJobs(
                tuple(
                    SubmitJob(ids[n], with_ids(specs[n], ids), caller.name, keys[n], at_us)
                    for n in batch_order(specs)
                )
            )
        )
        listing = await self._cluster_jobs.list(cluster_pb2.ListJobsRequest(ids=ids, limit=count))
        made = {job.id: job for job in listing.jobs}
        missing = [job_id for job_id in ids if job_id not in made]
        if missing:
            raise UnavailableError(f"the batch was accepted but job {missing[0]} is not found")
        return cluster_pb2.SubmitJobsResponse(
            jobs=[visible_job(made[job_id], caller) for job_id in ids]
        )

    async def GetJob(self, request: cluster_pb2.GetJobRequest, context: Context) -> types_pb2.Job:
        return visible_job(await self._cluster_jobs.get(request.id), current_caller())

    async def ListJobs(
        self, request: cluster_pb2.ListJobsRequest, context: Context
    ) -> cluster_pb2.ListJobsResponse:
        if request.limit > MAX_JOBS_PAGE:
            raise InvalidArgumentError(f"limit must be at most {MAX_JOBS_PAGE}")
        try:
            parse_page_token(request.page_token)
            for state in request.states:
                job_states.from_proto(state)
        except ValueError as exc:
            raise InvalidArgumentError(f"bad request: {exc}") from None
        if len(request.ids) > MAX_JOBS_PAGE:
            raise InvalidArgumentError(f"ids names at most {MAX_JOBS_PAGE} jobs")
        checked = cluster_pb2.ListJobsRequest()
        checked.CopyFrom(request)
        checked.limit = request.limit or DEFAULT_JOBS_PAGE
        page = await self._cluster_jobs.list(checked)
        caller = current_caller()
        shown = [visible_job(job, caller) for job in page.jobs]
        if any(a is not b for a, b in zip(shown, page.jobs, strict=True)):
            del page.jobs[:]
            page.jobs.extend(shown)
        return page

    async def CancelJob(
        self, request: cluster_pb2.CancelJobRequest, context: Context
    ) -> types_pb2.Job:
        check_reason(request.reason)
        caller = current_caller()
        cancelled = await self._cluster_jobs.propose(
            CancelJob(
                job_id=request.id,
                user=caller.name,
                is_admin=caller.role is Role.ADMIN,
                reason=request.reason,
                at_us=time.time_ns() // 1000,
            )
        )
        if not cancelled.id:  # an array: every task cancelled; the answer is the array
            cancelled = await self._cluster_jobs.get(request.id)
        return visible_job(cancelled, caller)

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

        caller = current_caller()
        async with contextlib.aclosing(self._cluster_jobs.watch(request)) as jobs:
            async for job in jobs:
                if matches(job):
                    yield visible_job(job, caller)

    async def StreamLogs(
        self, request: cluster_pb2.StreamLogsRequest, context: Context
    ) -> AsyncIterator[types_pb2.LogLine]:
        run = await self._run_of(request, current_caller())
        if run is None:
            return
        if run.node != self._name:
            # The run's files are on its node: relay that node's stream.
            node = self._view.node(run.node)
            if node is None or node.state in DOWN_STATES:
                raise UnavailableError(f"node {run.node}, which ran {run.id}, is not reachable")
            relayed = cluster_pb2.StreamLogsRequest()
            relayed.CopyFrom(request)
            relayed.run_id = run.id
            stub = self._peer_channels.cluster_stub(node.address)
            try:
                async for line in stub.StreamLogs(relayed):
                    yield line
            except grpc.aio.AioRpcError as exc:
                raise refused_by_peer(exc, f"node {run.node}") from None
            return
        files = self._executor.files_of(run.id)
        if request.follow and not await self._run_started_here(run, request.job_id, files):
            return  # it ended before it ever started here: no lines, none to come
        async for entry in run_log_entries(
            files.log_dir,
            from_offset=request.from_offset,
            tail_lines=request.tail_lines,
            follow=request.follow,
            run_ended=lambda: not self._executor.run_is_active(run.id),
        ):
            line = types_pb2.LogLine(
                run_id=run.id,
                stream=_LOG_STREAMS.get(entry.stream, types_pb2.LOG_STREAM_UNSPECIFIED),
                text=entry.text,
                offset=entry.offset,
            )
            line.time.FromNanoseconds(int(entry.time * 1e9))
            yield line

    async def _run_started_here(self, run: types_pb2.Run, job_id: str, files: RunFiles) -> bool:
        """Waits until ``run``, placed on this node, has started here (or ended after
        starting); False when it ended without. A ``job logs -f`` right after a
        submission gets a run the leader placed but this node has not started yet:
        followed as it was, it looked ended (not active here) and closed at once,
        empty."""
        if not job_id:
            return True  # a relay from a node that did not say: read what is there
        while not self._executor.run_is_active(run.id) and not files.log_dir.exists():
            job = await self._cluster_jobs.get(job_id)
            placed = next((r for r in job.runs if r.id == run.id), None)
            if placed is None or placed.state in ENDED_RUN_STATES:
                # Its log may have come into being meanwhile: read what is there.
                return self._executor.run_is_active(run.id) or files.log_dir.exists()
            await asyncio.sleep(RUN_START_POLL_SECONDS)
        return True

    async def _run_of(
        self, request: cluster_pb2.StreamLogsRequest, caller: CertificateIdentity
    ) -> types_pb2.Run | None:
        """The run whose log is asked for: the one named, or the job's newest; with
        ``follow``, waits for a pending job's first run.

        Raises:
            PermissionDeniedError: the caller may not read the job's output
                (:mod:`~murmur.node.api.services.job_visibility`).
            InvalidArgumentError: a run id without its job id, from a user.
        """
        if request.run_id and not request.job_id:
            if caller.role is not Role.NODE:
                # Only a node's relay names the run alone, and the node the user
                # reached checked the user against the job: a user names the job.
                raise InvalidArgumentError("a run's log is asked for with its job's id")
            return types_pb2.Run(id=request.run_id, node=self._name)
        while True:
            job = await self._cluster_jobs.get(request.job_id)
            check_may_read_output(caller, job)
            if job.HasField("array") and not job.array.HasField("task_index"):
                raise InvalidArgumentError(
                    f"job {job.id} is an array of {job.array.tasks} tasks: name one, "
                    f"e.g. '{job.id}[{_first_index(job)}]'"
                )
            if request.run_id:
                for run in job.runs:
                    if run.id == request.run_id:
                        return run
                raise NotFoundError(f"job {request.job_id} has no run {request.run_id}")
            if job.runs:
                return job.runs[-1]
            if not request.follow or job.state not in (
                types_pb2.JOB_STATE_PENDING,
                types_pb2.JOB_STATE_SCHEDULED,
                types_pb2.JOB_STATE_STARTING,
            ):
                return None
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

    async def RemoveDataset(
        self, request: cluster_pb2.RemoveDatasetRequest, context: Context
    ) -> types_pb2.Dataset:
        """Unregisters a dataset on the node that holds it: here, or relayed to it
        (which checks whose it is and that no run there mounts it). Files stay."""
        caller = current_caller()
        is_admin = caller.role is Role.ADMIN
        holder = self._dataset_holder(request.name, request.node)
        if holder == self._name:
            record = await self._datasets.remove(
                request.name,
                requested_by=caller.name,
                is_admin=is_admin,
                mounted_by=self._executor.jobs_mounting,
            )
            return dataset_message(record, self._name)
        node = self._view.node(holder)
        if node is None or node.state in DOWN_STATES:
            raise FailedPreconditionError(
                f"node {holder} is not up: its dataset cannot be removed now"
            )
        return await self._peers.remove_dataset(
            node.address,
            node=holder,
            name=request.name,
            requested_by=caller.name,
            is_admin=is_admin,
        )

    def _dataset_holder(self, name: str, node: str) -> str:
        """The node to remove dataset ``name`` from: ``node``, or the one node that
        holds it as gossip tells.

        Raises:
            InvalidArgumentError: no name, or several nodes hold it and none was named.
            NotFoundError: no node of that name, or none holds the dataset.
        """
        if not name:
            raise InvalidArgumentError("name the dataset to remove")
        if node:
            if node != self._name and self._view.node(node) is None:
                raise NotFoundError(f"no node named {node!r}")
            return node
        holders = sorted({d.node for d in self._view.datasets("") if d.name == name})
        if not holders:
            raise NotFoundError(f"no dataset named {name!r} on any node")
        if len(holders) > 1:
            raise InvalidArgumentError(
                f"dataset {name!r} is on nodes {', '.join(holders)}: say which with --from"
            )
        return holders[0]

    # ------------------------------------------------------------ revocations

    def _revocation_calls(self) -> RevocationCalls:
        if self._revocations is None:
            raise NotServedError(f"revocations are not served by {self._name}")
        return self._revocations

    async def RevokeCertificate(
        self, request: cluster_pb2.RevokeCertificateRequest, context: Context
    ) -> cluster_pb2.RevokeCertificateResponse:
        answer = await self._revocation_calls().revoke(request, caller=current_caller())
        if request.name and request.name != self._name:
            # A revoked voter is refused by every peer, but the leader would still send
            # it the log until the voter manager replaced it as dead: out at once.
            await self._forget_voter(request.name)
        return answer

    async def ListRevocations(
        self, request: cluster_pb2.ListRevocationsRequest, context: Context
    ) -> cluster_pb2.ListRevocationsResponse:
        return self._revocation_calls().listing()

    async def ListUsers(
        self, request: cluster_pb2.ListUsersRequest, context: Context
    ) -> cluster_pb2.ListUsersResponse:
        answer = await self._cluster_jobs.users()
        if current_caller().role not in (Role.ADMIN, Role.NODE):
            # A member may see who is in the lab, not what revoking them would take.
            answer.details_withheld = True
            for certificate in answer.certificates:
                certificate.serial = certificate.issued_by = ""
                certificate.revoked_by = certificate.revoke_reason = ""
        return answer

    async def RotateCa(
        self, request: cluster_pb2.RotateCaRequest, context: Context
    ) -> cluster_pb2.RotateCaResponse:
        if self._rotate_ca is None:
            raise NotServedError(f"CA rotation is not served by {self._name}")
        return await self._rotate_ca(request, current_caller().name)

    # ------------------------------------------------------------ lab policy

    async def ApplyPolicy(
        self, request: cluster_pb2.ApplyPolicyRequest, context: Context
    ) -> cluster_pb2.LabPolicyInfo:
        try:
            parse_policy(request.text)
        except PolicyError as exc:
            raise InvalidArgumentError(f"the policy is not valid: {exc}") from None
        await self._cluster_jobs.commit(
            SetLabPolicy(request.text, current_caller().name, time.time_ns() // 1000)
        )
        return await self._cluster_jobs.lab_policy()

    async def GetPolicy(
        self, request: cluster_pb2.GetPolicyRequest, context: Context
    ) -> cluster_pb2.LabPolicyInfo:
        return await self._cluster_jobs.lab_policy()

    async def GetUsage(
        self, request: cluster_pb2.GetUsageRequest, context: Context
    ) -> cluster_pb2.GetUsageResponse:
        return await self._cluster_jobs.usage(request)

    # ------------------------------------------------------------ services

    async def CreateService(
        self, request: cluster_pb2.CreateServiceRequest, context: Context
    ) -> types_pb2.Service:
        template = request.spec.template
        known = {d.name for d in self._view.datasets()} if template.datasets else set()
        spec = validate_service_spec(
            request.spec, known_datasets=known, path_roots=self._path_roots
        )
        at_us = time.time_ns() // 1000
        await self._cluster_jobs.commit(CreateService(spec, current_caller().name, at_us))
        return await self._service(spec.name)

    async def ScaleService(
        self, request: cluster_pb2.ScaleServiceRequest, context: Context
    ) -> types_pb2.Service:
        if request.replicas > MAX_REPLICAS:
            raise InvalidArgumentError(f"replicas must be at most {MAX_REPLICAS}")
        caller = current_caller()
        await self._cluster_jobs.commit(
            ScaleService(
                name=request.name, replicas=request.replicas, user=caller.name,
                is_admin=caller.role is Role.ADMIN, at_us=time.time_ns() // 1000,
            )
        )  # fmt: skip
        return await self._service(request.name)

    async def UpdateService(
        self, request: cluster_pb2.UpdateServiceRequest, context: Context
    ) -> types_pb2.Service:
        template = request.spec.template
        known = {d.name for d in self._view.datasets()} if template.datasets else set()
        spec = validate_service_spec(
            request.spec, known_datasets=known, path_roots=self._path_roots
        )
        caller = current_caller()
        await self._cluster_jobs.commit(
            UpdateService(
                spec, user=caller.name, is_admin=caller.role is Role.ADMIN,
                at_us=time.time_ns() // 1000,
            )
        )  # fmt: skip
        return await self._service(spec.name)

    async def DeleteService(
        self, request: cluster_pb2.DeleteServiceRequest, context: Context
    ) -> types_pb2.Service:
        before = await self._service(request.name)
        caller = current_caller()
        await self._cluster_jobs.commit(
            DeleteService(
                name=request.name, user=caller.name,
                is_admin=caller.role is Role.ADMIN, at_us=time.time_ns() // 1000,
            )
        )  # fmt: skip
        return before

    async def ListServices(
        self, request: cluster_pb2.ListServicesRequest, context: Context
    ) -> cluster_pb2.ListServicesResponse:
        listing = await self._cluster_jobs.services()
        endpoints = self._view.replica_endpoints()
        for service in listing.services:
            with_readiness(service, endpoints)
        return listing

    async def GetService(
        self, request: cluster_pb2.GetServiceRequest, context: Context
    ) -> types_pb2.Service:
        return await self._service(request.name)

    async def _service(self, name: str) -> types_pb2.Service:
        """One service as the log holds it, with its replicas' ports and readiness as
        gossip says.

        Raises:
            NotFoundError: no service of that name.
        """
        for service in (await self._cluster_jobs.services()).services:
            if service.spec.name == name:
                return with_readiness(service, self._view.replica_endpoints())
        raise NotFoundError(f"no service {name[:64]}")

    # ------------------------------------------------------------ API keys

    def _api_key_calls(self) -> ApiKeyCalls:
        if self._api_keys is None:
            raise NotServedError(f"API keys are not served by {self._name}")
        return self._api_keys

    async def CreateApiKey(
        self, request: apikeys_pb2.CreateApiKeyRequest, context: Context
    ) -> apikeys_pb2.CreateApiKeyResponse:
        return await self._api_key_calls().create(request, caller=current_caller())

    async def ListApiKeys(
        self, request: apikeys_pb2.ListApiKeysRequest, context: Context
    ) -> apikeys_pb2.ListApiKeysResponse:
        return await self._api_key_calls().listing(request, caller=current_caller())

    async def RevokeApiKey(
        self, request: apikeys_pb2.RevokeApiKeyRequest, context: Context
    ) -> apikeys_pb2.ApiKey:
        return await self._api_key_calls().revoke(request, caller=current_caller())

    async def _revoke_removed(self, name: str) -> None:
        """A removed node's certificates are revoked, so it cannot rejoin with them
        (node/api/services/revocations.py)."""
        if self._revocations is not None:
            await self._revocations.revoke_node(name, by=current_caller().name)


def _first_index(array: types_pb2.Job) -> int:
    """An index of one of the array's tasks, for a message's example."""
    indices = task_indices(array.spec.array)
    return indices[0] if len(indices) else 0


def with_readiness(
    service: types_pb2.Service, endpoints: dict[str, types_pb2.ServiceEndpoint]
) -> types_pb2.Service:
    """``service`` with each replica's port and readiness from its node's endpoint,
    and the count of ready replicas."""
    for replica in service.replicas:
        endpoint = endpoints.get(replica.job_id)
        if endpoint is not None:
            replica.port, replica.ready = endpoint.port, endpoint.ready
    service.ready = sum(1 for replica in service.replicas if replica.ready)
    return service
