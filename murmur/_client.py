"""`AsyncClient`: the Python face of a Murmur cluster's ClusterService.

Any node answers: it serves what it can itself and forwards the rest to the leader.
Every method returns the protobuf message the node sent (`google.protobuf.json_format`
turns one into a dict), raises a `MurmurError` subclass on failure, and takes
keyword-only `timeout=` and `metadata=`.
"""

# `timeout=` on these coroutines is the gRPC deadline handed to each call, which is how
# gRPC clients take it (Temporal, etcd3), not an asyncio timeout a caller could wrap.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

import grpc
import grpc.aio

from murmur._channel import secure_channel
from murmur._config import ConnectConfig, TLSConfig, resolve_connect_config
from murmur._errors import (
    ConfigError,
    InternalError,
    is_tls_handshake_failure,
    translate_rpc_errors,
)
from murmur.certs import CertificateError, check_validity
from murmur.v1 import cluster_pb2, cluster_pb2_grpc, types_pb2

if TYPE_CHECKING:
    import os

    from murmur.v1.cluster_pb2_grpc import ClusterServiceAsyncStub

__all__ = ["AsyncClient"]

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

CallMetadata = Sequence[tuple[str, str]]
"""Extra gRPC metadata sent with a call, as (key, value) pairs."""


class AsyncClient:
    """An asyncio client for one Murmur node, over mutual TLS.

    Use it as an async context manager, or call `close()` when done::

        async with AsyncClient.from_env() as client:
            job = await client.submit_job(murmur.JobSpec(command=["nvidia-smi"]))

    The channel opens on entry (or on the first call) in the running event loop, and
    belongs to that loop from then on.

    Timeouts: for a unary call, `timeout=None` means `config.timeout`, and the timeout
    bounds every attempt together. For a stream, `timeout=None` means no deadline:
    a watch runs until it is closed.
    """

    def __init__(self, config: ConnectConfig) -> None:
        self._config = config
        self._channel: grpc.aio.Channel | None = None
        self._stub: ClusterServiceAsyncStub | None = None
        self._closed = False

    @classmethod
    def from_env(
        cls, *, node: str | None = None, identity: str | os.PathLike[str] | None = None
    ) -> AsyncClient:
        """A client configured by `resolve_connect_config` from arguments, environment
        variables and `~/.murmur/`.

        Raises:
            ConfigError: The address is malformed or the identity cannot be read.
        """
        return cls(resolve_connect_config(node=node, identity=identity))

    @property
    def config(self) -> ConnectConfig:
        """The settings this client connects with."""
        return self._config

    @property
    def address(self) -> str:
        """The HOST:PORT of the node this client calls."""
        return self._config.address

    async def __aenter__(self) -> Self:
        self._connected_stub()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel, cancelling calls still open. Closing twice is harmless."""
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close(grace=None)

    # ------------------------------------------------------------------ identity

    @translate_rpc_errors
    async def whoami(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.WhoAmIResponse:
        """Who the node takes the caller to be, and which node answered."""
        stub = self._connected_stub()
        request = cluster_pb2.WhoAmIRequest()
        return await self._unary(stub.WhoAmI, request, timeout, metadata, retry=True)

    # --------------------------------------------------------------------- nodes

    @translate_rpc_errors
    async def status(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.ClusterStatus:
        """The cluster summary: nodes, leader, term, GPUs and jobs by state."""
        stub = self._connected_stub()
        request = cluster_pb2.GetStatusRequest()
        return await self._unary(stub.GetStatus, request, timeout, metadata, retry=True)

    @translate_rpc_errors
    async def list_nodes(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> list[types_pb2.NodeInfo]:
        """Every node the answering node knows of, alive or not."""
        stub = self._connected_stub()
        request = cluster_pb2.ListNodesRequest()
        response = await self._unary(stub.ListNodes, request, timeout, metadata, retry=True)
        return list(response.nodes)

    @translate_rpc_errors
    async def get_node(
        self, name: str, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> types_pb2.NodeInfo:
        """One node by name. Raises `NotFound` when no node has that name."""
        stub = self._connected_stub()
        request = cluster_pb2.GetNodeRequest(name=name)
        return await self._unary(stub.GetNode, request, timeout, metadata, retry=True)

    @translate_rpc_errors
    async def drain_node(
        self,
        name: str,
        *,
        undrain: bool = False,
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> types_pb2.NodeInfo:
        """Stops placing jobs on a node (admin); `undrain=True` lets it take jobs again."""
        stub = self._connected_stub()
        request = cluster_pb2.DrainNodeRequest(name=name, undrain=undrain)
        # Setting the drain flag twice leaves the same state: safe to retry.
        return await self._unary(stub.DrainNode, request, timeout, metadata, retry=True)

    @translate_rpc_errors
    async def remove_node(
        self, name: str, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.RemoveNodeResponse:
        """Forgets a dead node cluster-wide (admin); a node still alive is refused."""
        stub = self._connected_stub()
        request = cluster_pb2.RemoveNodeRequest(name=name)
        return await self._unary(stub.RemoveNode, request, timeout, metadata, retry=False)

    @translate_rpc_errors
    async def watch_nodes(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> AsyncIterator[types_pb2.NodeInfo]:
        """The current nodes, then each node again whenever it changes."""
        call = self._connected_stub().WatchNodes(
            cluster_pb2.WatchNodesRequest(), timeout=timeout, metadata=tuple(metadata)
        )
        try:
            async for node in call:
                yield node
        finally:
            call.cancel()

    # ---------------------------------------------------------------------- jobs

    @translate_rpc_errors
    async def submit_job(
        self,
        spec: types_pb2.JobSpec,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> types_pb2.Job:
        """Submits a job and returns it as the leader accepted it (with its id).

        Args:
            spec: What to run and what it needs. ``spec.secrets`` are environment
                variables whose values no call ever returns, not even to you: jobs
                come back with their names in ``spec.secret_names``. Env values and
                logs are for the job's owner and admins; others see env values as
                ``<redacted>``. A run lost with its node (dead, removed, or cut
                off) requeues the job without spending a retry unless
                ``spec.no_requeue`` is set; ``spec.retries`` covers the job's own
                failures.
            idempotency_key: Submissions with the same key create one job; a fresh
                random key is used when None. The key is what makes retrying a
                submission after a lost connection safe.
        """
        stub = self._connected_stub()
        request = cluster_pb2.SubmitJobRequest(
            spec=spec, idempotency_key=idempotency_key or str(uuid.uuid4())
        )
        return await self._unary(stub.SubmitJob, request, timeout, metadata, retry=True)

    @translate_rpc_errors
    async def list_jobs(
        self,
        *,
        states: Iterable[types_pb2.JobState.ValueType] = (),
        user: str = "",
        queue: str = "",
        limit: int = 0,
        include_archived: bool = False,
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> list[types_pb2.Job]:
        """Jobs matching every filter given, fetching page after page.

        Args:
            states: Only jobs in one of these states; all states when empty.
            user: Only this user's jobs.
            queue: Only jobs of this queue.
            limit: At most this many jobs; 0 for all of them.
            include_archived: Also jobs the cluster no longer keeps in its queue
                (ended longer ago than its job retention), from the archive; they
                come with ``archived`` set.
            timeout: Seconds for each page's call.
        """
        stub = self._connected_stub()
        wanted_states = list(states)
        jobs: list[types_pb2.Job] = []
        page_token = ""
        while True:
            request = cluster_pb2.ListJobsRequest(
                states=wanted_states,
                user=user,
                queue=queue,
                limit=limit - len(jobs) if limit else 0,
                page_token=page_token,
                include_archived=include_archived,
            )
            page = await self._unary(stub.ListJobs, request, timeout, metadata, retry=True)
            jobs.extend(page.jobs)
            if not page.next_page_token or (limit and len(jobs) >= limit):
                return jobs[:limit] if limit else jobs
            if page.next_page_token == page_token:
                raise InternalError(f"node {self.address} sent the same page token twice")
            page_token = page.next_page_token

    @translate_rpc_errors
    async def get_job(
        self, job_id: str, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> types_pb2.Job:
        """One job with all its runs. Raises `NotFound` when no job has that id."""
        stub = self._connected_stub()
        request = cluster_pb2.GetJobRequest(id=job_id)
        return await self._unary(stub.GetJob, request, timeout, metadata, retry=True)

    @translate_rpc_errors
    async def cancel_job(
        self,
        job_id: str,
        *,
        reason: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> types_pb2.Job:
        """Cancels a job (stopping its runs) and returns it; `reason` goes to its events."""
        stub = self._connected_stub()
        request = cluster_pb2.CancelJobRequest(id=job_id, reason=reason)
        return await self._unary(stub.CancelJob, request, timeout, metadata, retry=False)

    @translate_rpc_errors
    async def watch_jobs(
        self,
        *,
        states: Iterable[types_pb2.JobState.ValueType] = (),
        user: str = "",
        queue: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> AsyncIterator[types_pb2.Job]:
        """The matching jobs, then each of them again whenever it changes."""
        request = cluster_pb2.WatchJobsRequest(states=list(states), user=user, queue=queue)
        call = self._connected_stub().WatchJobs(request, timeout=timeout, metadata=tuple(metadata))
        try:
            async for job in call:
                yield job
        finally:
            call.cancel()

    @translate_rpc_errors
    async def stream_logs(
        self,
        job_id: str,
        *,
        run_id: str = "",
        follow: bool = False,
        tail_lines: int = 0,
        from_offset: int = 0,
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> AsyncIterator[types_pb2.LogLine]:
        """A run's log lines; with `follow`, live lines until the run ends.

        Args:
            job_id: The job whose log to read.
            run_id: Which run; the job's latest when empty.
            follow: Keep streaming new lines until the run finishes.
            tail_lines: Start with only the last this many lines; 0 for all.
            from_offset: Resume after this byte offset (a `LogLine.offset` seen before).
        """
        request = cluster_pb2.StreamLogsRequest(
            job_id=job_id,
            run_id=run_id,
            follow=follow,
            tail_lines=tail_lines,
            from_offset=from_offset,
        )
        call = self._connected_stub().StreamLogs(request, timeout=timeout, metadata=tuple(metadata))
        try:
            async for line in call:
                yield line
        finally:
            call.cancel()

    # ------------------------------------------------------------------ datasets

    @translate_rpc_errors
    async def add_dataset(
        self,
        name: str,
        path: str,
        *,
        on_progress: Callable[[cluster_pb2.DatasetScanProgress], object] | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> types_pb2.Dataset:
        """Registers a directory on the answering node's disk as a named dataset.

        The node scans the whole tree (size, file count, content manifest) before it
        answers, which takes minutes for a large one. Cancelling the call stops the
        scan, and nothing is added.

        Args:
            name: The dataset's name, as jobs will ask for it.
            path: A directory on that node, under one of its configured data roots.
            on_progress: Called on this client's event loop with each progress update
                the node sends while it scans: at most four a second, none for a tree
                scanned in under a quarter second. Keep it quick; an exception it
                raises cancels the add. A node whose murmur predates progress reports
                is asked without them (never called).
            timeout: Seconds for the whole call. With `on_progress`, None means no
                deadline: the updates show that the scan goes on.
        """
        stub = self._connected_stub()
        request = cluster_pb2.AddDatasetRequest(name=name, path=path)
        if on_progress is not None:
            call = stub.AddDatasetWithProgress(request, timeout=timeout, metadata=tuple(metadata))
            dataset: types_pb2.Dataset | None = None
            try:
                # Read to the end of the stream, which comes right after the dataset:
                # the call then ends OK on the node (and in its audit log).
                async for message in call:
                    if message.HasField("dataset"):
                        dataset = message.dataset
                    else:
                        on_progress(message.scan)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
            else:
                if dataset is None:
                    raise InternalError(f"node {self.address} ended the scan without the dataset")
                return dataset
            finally:
                call.cancel()
        return await self._unary(stub.AddDataset, request, timeout, metadata, retry=False)

    @translate_rpc_errors
    async def list_datasets(
        self, *, node: str = "", timeout: float | None = None, metadata: CallMetadata = ()
    ) -> list[types_pb2.Dataset]:
        """Every dataset the cluster knows of; only those on `node` when given."""
        stub = self._connected_stub()
        request = cluster_pb2.ListDatasetsRequest(node=node)
        response = await self._unary(stub.ListDatasets, request, timeout, metadata, retry=True)
        return list(response.datasets)

    @translate_rpc_errors
    async def get_dataset(
        self, name: str, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> types_pb2.Dataset:
        """One dataset by name. Raises `NotFound` when none has that name."""
        stub = self._connected_stub()
        request = cluster_pb2.GetDatasetRequest(name=name)
        return await self._unary(stub.GetDataset, request, timeout, metadata, retry=True)

    # ------------------------------------------------------------- events, audit

    @translate_rpc_errors
    async def watch_events(
        self,
        *,
        since_id: int = 0,
        subject: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> AsyncIterator[types_pb2.Event]:
        """Events after `since_id` (all when 0), then live ones; only `subject`'s if given."""
        request = cluster_pb2.WatchEventsRequest(since_id=since_id, subject=subject)
        call = self._connected_stub().WatchEvents(
            request, timeout=timeout, metadata=tuple(metadata)
        )
        try:
            async for event in call:
                yield event
        finally:
            call.cancel()

    @translate_rpc_errors
    async def list_audit(
        self,
        *,
        limit: int = 100,
        user: str = "",
        before_id: int = 0,
        since: datetime | None = None,
        action: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> list[types_pb2.AuditRecord]:
        """The cluster's newest audit records, newest first (admin): every node answers
        the same. Page back with `before_id` (the smallest id of a page); filter by
        `user`, `action` (an RPC name, e.g. "SubmitJob") and `since` (a naive datetime
        is taken as UTC)."""
        stub = self._connected_stub()
        request = cluster_pb2.ListAuditRequest(
            limit=limit, user=user, before_id=before_id, action=action
        )
        if since is not None:
            request.since.FromDatetime(since)
        response = await self._unary(stub.ListAudit, request, timeout, metadata, retry=True)
        return list(response.records)

    @translate_rpc_errors
    async def verify_audit(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.VerifyAuditResponse:
        """Checks the hash chain of the audit trail the node holds (admin): `intact`, or
        the first bad entry (`bad_id`) and what is wrong with it (`problem`)."""
        stub = self._connected_stub()
        request = cluster_pb2.VerifyAuditRequest()
        return await self._unary(stub.VerifyAudit, request, timeout, metadata, retry=True)

    # ------------------------------------------------------------- CA operations

    @translate_rpc_errors
    async def create_join_token(
        self, *, ttl_seconds: int = 0, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.CreateJoinTokenResponse:
        """A one-time token a new node joins with (admin); `ttl_seconds=0`: node default."""
        stub = self._connected_stub()
        request = cluster_pb2.CreateJoinTokenRequest(ttl_seconds=ttl_seconds)
        return await self._unary(stub.CreateJoinToken, request, timeout, metadata, retry=False)

    @translate_rpc_errors
    async def issue_user_certificate(
        self,
        name: str,
        role: types_pb2.Role.ValueType,
        csr_pem: bytes,
        *,
        ttl_days: int = 0,
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> cluster_pb2.IssueUserCertificateResponse:
        """Has the lab CA sign a user's certificate request with a role (admin).

        Args:
            name: The user's name, written into the certificate.
            role: What the user may do, e.g. `Role.ROLE_MEMBER`.
            csr_pem: The user's certificate signing request, PEM; the key stays theirs.
            ttl_days: Validity in days; 0 for the node's default.
        """
        stub = self._connected_stub()
        request = cluster_pb2.IssueUserCertificateRequest(
            name=name, role=role, csr_pem=csr_pem, ttl_days=ttl_days
        )
        return await self._unary(stub.IssueUserCertificate, request, timeout, metadata, retry=False)

    # --------------------------------------------------------------- revocations

    @translate_rpc_errors
    async def revoke_certificate(
        self,
        *,
        name: str = "",
        serial: str = "",
        reason: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> cluster_pb2.RevokeCertificateResponse:
        """Revokes certificates cluster-wide (admin): by `name`, every certificate of
        that user or node issued up to now (a later `murmur user add` issues one that
        works); by `serial` (hex), exactly one. Every node refuses it within seconds
        and ends its open streams. Revoking a user cancels none of their jobs: the
        answer's `active_jobs` lists their pending and running ones."""
        stub = self._connected_stub()
        request = cluster_pb2.RevokeCertificateRequest(name=name, serial=serial, reason=reason)
        return await self._unary(stub.RevokeCertificate, request, timeout, metadata, retry=False)

    @translate_rpc_errors
    async def list_revocations(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.ListRevocationsResponse:
        """The certificate revocations the node enforces, in the order they were made
        (admin)."""
        stub = self._connected_stub()
        request = cluster_pb2.ListRevocationsRequest()
        return await self._unary(stub.ListRevocations, request, timeout, metadata, retry=True)

    @translate_rpc_errors
    async def apply_policy(
        self, text: str, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.LabPolicyInfo:
        """Applies the lab's scheduling policy (TOML text; empty: none) through the
        control log (admin); the answer is the policy now in force."""
        stub = self._connected_stub()
        request = cluster_pb2.ApplyPolicyRequest(text=text)
        return await self._unary(stub.ApplyPolicy, request, timeout, metadata, retry=False)

    @translate_rpc_errors
    async def get_policy(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.LabPolicyInfo:
        """The lab's scheduling policy in force (its text, version, who applied it)."""
        stub = self._connected_stub()
        request = cluster_pb2.GetPolicyRequest()
        return await self._unary(stub.GetPolicy, request, timeout, metadata, retry=True)

    @translate_rpc_errors
    async def get_usage(
        self,
        *,
        since: datetime | None = None,
        group: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> cluster_pb2.GetUsageResponse:
        """GPU-hours of runs that ended (since ``since``; of ``group``'s users), per
        user and group, with fair-share factors when the lab policy orders by them."""
        stub = self._connected_stub()
        request = cluster_pb2.GetUsageRequest(group=group)
        if since is not None:
            request.since.FromDatetime(since)
        return await self._unary(stub.GetUsage, request, timeout, metadata, retry=True)

    @translate_rpc_errors
    async def rotate_ca(
        self,
        step: str,
        *,
        force: bool = False,
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> cluster_pb2.RotateCaResponse:
        """Starts (``step="start"``: a new CA signs, old and new are trusted) or
        finishes (``"finish"``: the old CA is trusted no more) a CA rotation (admin).
        ``force`` finishes although some live nodes still hold a certificate of the
        old CA (they must join again)."""
        steps = {
            "start": cluster_pb2.RotateCaRequest.STEP_START,
            "finish": cluster_pb2.RotateCaRequest.STEP_FINISH,
        }
        if step not in steps:
            raise ValueError(f"step must be start or finish, not {step!r}")
        stub = self._connected_stub()
        request = cluster_pb2.RotateCaRequest(step=steps[step], force=force)
        return await self._unary(stub.RotateCa, request, timeout, metadata, retry=False)

    # ------------------------------------------------------------------ plumbing

    def _connected_stub(self) -> ClusterServiceAsyncStub:
        """The stub over this client's channel, opening the channel on first use."""
        if self._closed:
            raise RuntimeError("this Murmur client is closed; create a new one")
        if self._stub is None:
            _check_certificate_dates(self._config.tls)
            self._channel = secure_channel(self._config)
            self._stub = cluster_pb2_grpc.ClusterServiceStub(self._channel)
        return self._stub

    async def _unary(
        self,
        rpc: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response],
        request: _Request,
        timeout: float | None,
        metadata: CallMetadata,
        *,
        retry: bool,
    ) -> _Response:
        """Makes one unary call; if `retry`, repeats it while the node is UNAVAILABLE.

        Only calls whose repetition cannot do anything twice pass `retry=True`. All
        attempts share the one deadline, and a pause that would pass it is not taken.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._config.timeout if timeout is None else timeout)
        policy = self._config.retry
        attempts_left = policy.max_attempts if retry else 1
        backoff = policy.initial_backoff
        while True:
            attempts_left -= 1
            remaining = max(deadline - loop.time(), 0.0)
            try:
                return await rpc(request, timeout=remaining, metadata=tuple(metadata))
            except grpc.RpcError as err:
                pause = random.uniform(backoff / 2, backoff)
                # A refused certificate is UNAVAILABLE too, but asking again cannot help.
                retryable = err.code() == grpc.StatusCode.UNAVAILABLE and not (
                    is_tls_handshake_failure(err)
                )
                if not retryable or attempts_left <= 0 or loop.time() + pause >= deadline:
                    raise
            await asyncio.sleep(pause)
            backoff = min(backoff * 2, policy.max_backoff)


def _check_certificate_dates(tls: TLSConfig) -> None:
    """Refuses a certificate outside its validity period before any TLS handshake,
    which would fail with a message that does not say why."""
    if tls.identity is None:
        return
    try:
        check_validity(tls.identity)
    except CertificateError as err:
        raise ConfigError(f"cannot use your identity: {err}") from err
