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
import collections
import dataclasses
import os
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Self, TypeVar

import grpc
import grpc.aio

from murmur._channel import secure_channel
from murmur._config import (
    ConnectConfig,
    TLSConfig,
    resolve_connect_config,
    validate_node_address,
)
from murmur._errors import (
    ConfigError,
    InternalError,
    is_tls_handshake_failure,
    translate_rpc_errors,
)
from murmur.certs import CertificateError, check_validity
from murmur.v1 import apikeys_pb2, cluster_pb2, cluster_pb2_grpc, types_pb2

if TYPE_CHECKING:
    from murmur.v1.cluster_pb2_grpc import ClusterServiceAsyncStub

__all__ = ["AsyncClient"]

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

CallMetadata = Sequence[tuple[str, str]]
"""Extra gRPC metadata sent with a call, as (key, value) pairs."""

FailoverHook = Callable[[str, str], object]
"""Called as ``hook(unreachable_address, new_address)`` when a client moves to another
node."""

_CONNECT_PROBE_SECONDS = 3.0
"""How long a client with other nodes to fall back on waits for a node's connection
before it tries the next: far more than a TCP and TLS handshake take on a lab
network, far less than a dead host's connect timeout."""

_NEWEST_FIRST_PAGE = 500
"""Jobs per page when `list_jobs` reads every page to return the newest."""

_UP_STATES = frozenset({types_pb2.NODE_STATE_ALIVE, types_pb2.NODE_STATE_DRAINING})


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

    Failover: when other nodes are known (`config.fallback_addresses`, and the nodes
    the cluster reported in this client's last `status()` or `list_nodes()` answer),
    the client first makes sure its node can be reached, and if it cannot, moves to
    the first of the others that can, before it sends anything (`on_failover` hears of
    it). A call that lost its node on the way moves only if it is safe to repeat: the
    reads, and submissions, whose idempotency key stays the same. `add_dataset` never
    moves: its path is on one node's disk.
    """

    def __init__(self, config: ConnectConfig, *, on_failover: FailoverHook | None = None) -> None:
        self._config = config
        self._on_failover = on_failover
        self._address = config.address
        self._learned: list[str] = []
        self._channel: grpc.aio.Channel | None = None
        self._stub: ClusterServiceAsyncStub | None = None
        self._reachable = False
        """Whether the current node was reached since its last failure (no probe needed)."""
        self._failover_lock = asyncio.Lock()
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
        """The HOST:PORT of the node this client calls: `config.address`, unless the
        client has moved to another node."""
        return self._address

    @property
    def learned_addresses(self) -> tuple[str, ...]:
        """The addresses of the nodes in the last `status()` or `list_nodes()` answer,
        those up (alive, draining) first, without those that left; empty before one."""
        return tuple(self._learned)

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
        request = cluster_pb2.WhoAmIRequest()
        return await self._unary(lambda stub: stub.WhoAmI, request, timeout, metadata, retry=True)

    # --------------------------------------------------------------------- nodes

    @translate_rpc_errors
    async def status(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.ClusterStatus:
        """The cluster summary: nodes, leader, term, GPUs and jobs by state."""
        request = cluster_pb2.GetStatusRequest()
        status = await self._unary(
            lambda stub: stub.GetStatus, request, timeout, metadata, retry=True
        )
        self._learn(status.nodes)
        return status

    @translate_rpc_errors
    async def list_nodes(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> list[types_pb2.NodeInfo]:
        """Every node the answering node knows of, alive or not."""
        request = cluster_pb2.ListNodesRequest()
        response = await self._unary(
            lambda stub: stub.ListNodes, request, timeout, metadata, retry=True
        )
        self._learn(response.nodes)
        return list(response.nodes)

    @translate_rpc_errors
    async def get_node(
        self, name: str, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> types_pb2.NodeInfo:
        """One node by name. Raises `NotFound` when no node has that name."""
        request = cluster_pb2.GetNodeRequest(name=name)
        return await self._unary(lambda stub: stub.GetNode, request, timeout, metadata, retry=True)

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
        request = cluster_pb2.DrainNodeRequest(name=name, undrain=undrain)
        # Setting the drain flag twice leaves the same state: safe to retry.
        return await self._unary(
            lambda stub: stub.DrainNode, request, timeout, metadata, retry=True
        )

    @translate_rpc_errors
    async def remove_node(
        self, name: str, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.RemoveNodeResponse:
        """Forgets a dead node cluster-wide (admin); a node still alive is refused."""
        request = cluster_pb2.RemoveNodeRequest(name=name)
        return await self._unary(
            lambda stub: stub.RemoveNode, request, timeout, metadata, retry=False
        )

    @translate_rpc_errors
    async def watch_nodes(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> AsyncIterator[types_pb2.NodeInfo]:
        """The current nodes, then each node again whenever it changes."""
        stub = await self._reachable_stub()
        call = stub.WatchNodes(
            cluster_pb2.WatchNodesRequest(), timeout=timeout, metadata=tuple(metadata)
        )
        try:
            async for node in call:
                yield node
        except grpc.RpcError as err:
            self._after_failure(err, stub)
            raise
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
        request = cluster_pb2.SubmitJobRequest(
            spec=spec, idempotency_key=idempotency_key or _random_key()
        )
        return await self._unary(
            lambda stub: stub.SubmitJob, request, timeout, metadata, retry=True
        )

    @translate_rpc_errors
    async def submit_jobs(
        self,
        specs: Sequence[types_pb2.JobSpec],
        *,
        idempotency_keys: Sequence[str] | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> list[types_pb2.Job]:
        """Submits several jobs in one call: every one is accepted, or none is.

        A job may wait for another of the same call: ``@N`` in its
        ``spec.after`` names the Nth spec (1-based). An array comes back as one
        record (its id the array's).

        Args:
            specs: What to run, as for `submit_job`; at most 1000.
            idempotency_keys: One per spec; a submission with the same keys again
                returns the jobs the first made. Fresh random keys when None.

        Raises:
            InvalidArgument: A spec is refused; the message begins ``job N:`` (1-based)
                and nothing was submitted.
        """
        keys = list(idempotency_keys) if idempotency_keys is not None else []
        if idempotency_keys is None:
            keys = [_random_key() for _ in specs]
        if len(keys) != len(specs):
            raise ValueError(f"{len(specs)} specs but {len(keys)} idempotency keys")
        request = cluster_pb2.SubmitJobsRequest(
            jobs=[
                cluster_pb2.SubmitJobRequest(spec=spec, idempotency_key=key)
                for spec, key in zip(specs, keys, strict=True)
            ]
        )
        response = await self._unary(
            lambda stub: stub.SubmitJobs, request, timeout, metadata, retry=True
        )
        return list(response.jobs)

    @translate_rpc_errors
    async def list_jobs(
        self,
        *,
        states: Iterable[types_pb2.JobState.ValueType] = (),
        user: str = "",
        queue: str = "",
        limit: int = 0,
        include_archived: bool = False,
        newest_first: bool = False,
        labels: Mapping[str, str] | None = None,
        project: str = "",
        tasks: bool = False,
        ids: Iterable[str] = (),
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> list[types_pb2.Job]:
        """Jobs matching every filter given, oldest first, fetching page after page.

        An array whose every task matches comes as one record (its id the array's,
        ``array.tasks_by_state`` counting its tasks), unless `tasks` is set.

        Args:
            states: Only jobs in one of these states; all states when empty.
            user: Only this user's jobs.
            queue: Only jobs of this queue.
            labels: Only jobs with every one of these labels (a sweep's task has
                its values as labels).
            project: Only jobs of this project.
            tasks: Each task of an array on its own.
            ids: Only these jobs (or arrays).
            limit: At most this many jobs (the oldest, or with `newest_first` the
                newest); 0 for all of them.
            include_archived: Also jobs the cluster no longer keeps in its queue
                (ended longer ago than its job retention), from the archive; they
                come with ``archived`` set.
            newest_first: The newest jobs first. Nodes send jobs oldest first, so
                this reads every matching job to keep the newest `limit`: the
                archive's too with `include_archived`.
            timeout: Seconds for each page's call.
        """
        wanted_states = list(states)
        wanted_ids = list(ids)
        kept: collections.deque[types_pb2.Job] = collections.deque(
            maxlen=limit if newest_first and limit else None
        )
        page_token = ""
        while True:
            still_wanted = limit - len(kept) if limit else 0
            request = cluster_pb2.ListJobsRequest(
                states=wanted_states,
                user=user,
                queue=queue,
                limit=_NEWEST_FIRST_PAGE if newest_first else still_wanted,
                page_token=page_token,
                include_archived=include_archived,
                labels=dict(labels or {}),
                project=project,
                tasks=tasks,
                ids=wanted_ids,
            )
            page = await self._unary(
                lambda stub: stub.ListJobs, request, timeout, metadata, retry=True
            )
            kept.extend(page.jobs)
            if not page.next_page_token or (limit and not newest_first and len(kept) >= limit):
                break
            if page.next_page_token == page_token:
                raise InternalError(f"node {self.address} sent the same page token twice")
            page_token = page.next_page_token
        if newest_first:
            return list(reversed(kept))
        jobs = list(kept)
        return jobs[:limit] if limit else jobs

    @translate_rpc_errors
    async def get_job(
        self, job_id: str, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> types_pb2.Job:
        """One job with all its runs. Raises `NotFound` when no job has that id."""
        request = cluster_pb2.GetJobRequest(id=job_id)
        return await self._unary(lambda stub: stub.GetJob, request, timeout, metadata, retry=True)

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
        request = cluster_pb2.CancelJobRequest(id=job_id, reason=reason)
        return await self._unary(
            lambda stub: stub.CancelJob, request, timeout, metadata, retry=False
        )

    @translate_rpc_errors
    async def watch_jobs(
        self,
        *,
        states: Iterable[types_pb2.JobState.ValueType] = (),
        user: str = "",
        queue: str = "",
        fold_arrays: bool = False,
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> AsyncIterator[types_pb2.Job]:
        """The matching jobs, then each of them again whenever it changes. With
        `fold_arrays`, an array's tasks come as the array's own record, again
        whenever one of them changes."""
        request = cluster_pb2.WatchJobsRequest(
            states=list(states), user=user, queue=queue, fold_arrays=fold_arrays
        )
        stub = await self._reachable_stub()
        call = stub.WatchJobs(request, timeout=timeout, metadata=tuple(metadata))
        try:
            async for job in call:
                yield job
        except grpc.RpcError as err:
            self._after_failure(err, stub)
            raise
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
        stub = await self._reachable_stub()
        call = stub.StreamLogs(request, timeout=timeout, metadata=tuple(metadata))
        try:
            async for line in call:
                yield line
        except grpc.RpcError as err:
            self._after_failure(err, stub)
            raise
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
        # Never moved to another node: the path is on this one's disk.
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
        return await self._unary(
            lambda stub: stub.AddDataset, request, timeout, metadata, retry=False, failover=False
        )

    @translate_rpc_errors
    async def list_datasets(
        self, *, node: str = "", timeout: float | None = None, metadata: CallMetadata = ()
    ) -> list[types_pb2.Dataset]:
        """Every dataset the cluster knows of; only those on `node` when given."""
        request = cluster_pb2.ListDatasetsRequest(node=node)
        response = await self._unary(
            lambda stub: stub.ListDatasets, request, timeout, metadata, retry=True
        )
        return list(response.datasets)

    @translate_rpc_errors
    async def get_dataset(
        self, name: str, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> types_pb2.Dataset:
        """One dataset by name. Raises `NotFound` when none has that name."""
        request = cluster_pb2.GetDatasetRequest(name=name)
        return await self._unary(
            lambda stub: stub.GetDataset, request, timeout, metadata, retry=True
        )

    @translate_rpc_errors
    async def remove_dataset(
        self,
        name: str,
        *,
        node: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> types_pb2.Dataset:
        """Unregisters dataset `name` from `node` (default: the one node that holds
        it) and returns its record. Its files are left on disk. Raises `NotFound`,
        `PermissionDenied` (neither an admin nor who added it), `InvalidArgument`
        (several nodes hold it and `node` is not given) or `FailedPrecondition` (a
        running job on that node mounts it)."""
        request = cluster_pb2.RemoveDatasetRequest(name=name, node=node)
        return await self._unary(
            lambda stub: stub.RemoveDataset, request, timeout, metadata, retry=False
        )

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
        stub = await self._reachable_stub()
        call = stub.WatchEvents(request, timeout=timeout, metadata=tuple(metadata))
        try:
            async for event in call:
                yield event
        except grpc.RpcError as err:
            self._after_failure(err, stub)
            raise
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
        request = cluster_pb2.ListAuditRequest(
            limit=limit, user=user, before_id=before_id, action=action
        )
        if since is not None:
            request.since.FromDatetime(since)
        response = await self._unary(
            lambda stub: stub.ListAudit, request, timeout, metadata, retry=True
        )
        return list(response.records)

    @translate_rpc_errors
    async def verify_audit(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.VerifyAuditResponse:
        """Checks the hash chain of the audit trail the node holds (admin): `intact`, or
        the first bad entry (`bad_id`) and what is wrong with it (`problem`)."""
        request = cluster_pb2.VerifyAuditRequest()
        return await self._unary(
            lambda stub: stub.VerifyAudit, request, timeout, metadata, retry=True
        )

    # ------------------------------------------------------------- CA operations

    @translate_rpc_errors
    async def create_join_token(
        self, *, ttl_seconds: int = 0, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.CreateJoinTokenResponse:
        """A one-time token a new node joins with (admin); `ttl_seconds=0`: node default."""
        request = cluster_pb2.CreateJoinTokenRequest(ttl_seconds=ttl_seconds)
        return await self._unary(
            lambda stub: stub.CreateJoinToken, request, timeout, metadata, retry=False
        )

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
        request = cluster_pb2.IssueUserCertificateRequest(
            name=name, role=role, csr_pem=csr_pem, ttl_days=ttl_days
        )
        return await self._unary(
            lambda stub: stub.IssueUserCertificate, request, timeout, metadata, retry=False
        )

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
        request = cluster_pb2.RevokeCertificateRequest(name=name, serial=serial, reason=reason)
        return await self._unary(
            lambda stub: stub.RevokeCertificate, request, timeout, metadata, retry=False
        )

    @translate_rpc_errors
    async def list_revocations(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.ListRevocationsResponse:
        """The certificate revocations the node enforces, in the order they were made
        (admin)."""
        request = cluster_pb2.ListRevocationsRequest()
        return await self._unary(
            lambda stub: stub.ListRevocations, request, timeout, metadata, retry=True
        )

    @translate_rpc_errors
    async def list_users(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.ListUsersResponse:
        """Every user certificate the lab CA issued since records began, in issue
        order, each with its revocation if any. Serials, issuers and revocation
        details are left empty unless the caller is an admin (``details_withheld``)."""
        request = cluster_pb2.ListUsersRequest()
        return await self._unary(
            lambda stub: stub.ListUsers, request, timeout, metadata, retry=True
        )

    @translate_rpc_errors
    async def apply_policy(
        self, text: str, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.LabPolicyInfo:
        """Applies the lab's scheduling policy (TOML text; empty: none) through the
        control log (admin); the answer is the policy now in force."""
        request = cluster_pb2.ApplyPolicyRequest(text=text)
        return await self._unary(
            lambda stub: stub.ApplyPolicy, request, timeout, metadata, retry=False
        )

    @translate_rpc_errors
    async def get_policy(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> cluster_pb2.LabPolicyInfo:
        """The lab's scheduling policy in force (its text, version, who applied it)."""
        request = cluster_pb2.GetPolicyRequest()
        return await self._unary(
            lambda stub: stub.GetPolicy, request, timeout, metadata, retry=True
        )

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
        request = cluster_pb2.GetUsageRequest(group=group)
        if since is not None:
            request.since.FromDatetime(since)
        return await self._unary(lambda stub: stub.GetUsage, request, timeout, metadata, retry=True)

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
        request = cluster_pb2.RotateCaRequest(step=steps[step], force=force)
        return await self._unary(
            lambda stub: stub.RotateCa, request, timeout, metadata, retry=False
        )

    # ------------------------------------------------------------------ services

    @translate_rpc_errors
    async def create_service(
        self,
        spec: types_pb2.ServiceSpec,
        *,
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> types_pb2.Service:
        """Creates a service: ``spec.replicas`` replicas of ``spec.template`` kept
        running, probed ready and routed to by every node's router."""
        request = cluster_pb2.CreateServiceRequest(spec=spec)
        return await self._unary(
            lambda stub: stub.CreateService, request, timeout, metadata, retry=False
        )

    @translate_rpc_errors
    async def scale_service(
        self, name: str, replicas: int, *, timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> types_pb2.Service:  # fmt: skip
        """Sets how many replicas the service keeps (its owner or an admin)."""
        request = cluster_pb2.ScaleServiceRequest(name=name, replicas=replicas)
        return await self._unary(
            lambda stub: stub.ScaleService, request, timeout, metadata, retry=True
        )

    @translate_rpc_errors
    async def update_service(
        self,
        spec: types_pb2.ServiceSpec,
        *,
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> types_pb2.Service:
        """Gives service ``spec.name`` a new spec (its owner or an admin): its replicas
        are replaced one at a time, never leaving fewer than N-1 ready. ``replicas``
        0 keeps the count. Sending the same spec again changes nothing, so a retry is
        safe."""
        request = cluster_pb2.UpdateServiceRequest(spec=spec)
        return await self._unary(
            lambda stub: stub.UpdateService, request, timeout, metadata, retry=True
        )

    @translate_rpc_errors
    async def delete_service(
        self, name: str, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> types_pb2.Service:
        """Deletes the service (its owner or an admin): its replicas are stopped."""
        request = cluster_pb2.DeleteServiceRequest(name=name)
        return await self._unary(
            lambda stub: stub.DeleteService, request, timeout, metadata, retry=False
        )

    @translate_rpc_errors
    async def list_services(
        self, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> list[types_pb2.Service]:
        """Every service, by name, with its replicas."""
        request = cluster_pb2.ListServicesRequest()
        answer = await self._unary(
            lambda stub: stub.ListServices, request, timeout, metadata, retry=True
        )
        return list(answer.services)

    @translate_rpc_errors
    async def get_service(
        self, name: str, *, timeout: float | None = None, metadata: CallMetadata = ()
    ) -> types_pb2.Service:
        """One service, with its replicas (state, node, port, ready)."""
        request = cluster_pb2.GetServiceRequest(name=name)
        return await self._unary(
            lambda stub: stub.GetService, request, timeout, metadata, retry=True
        )

    # ------------------------------------------------------------------ API keys

    @translate_rpc_errors
    async def create_api_key(
        self,
        name: str,
        *,
        models: Iterable[str] = (),
        rpm: int = 0,
        expires_at: datetime | None = None,
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> apikeys_pb2.CreateApiKeyResponse:
        """Creates an API key for the model router, yours: ``models`` it may call (none:
        every one), ``rpm`` requests a minute on each router (0: no limit), when it
        expires (None: never). The answer's ``key`` is the whole key, shown this once:
        only its hash is kept. Not retried: a retry would make a second key."""
        request = apikeys_pb2.CreateApiKeyRequest(name=name, models=list(models), rpm=rpm)
        if expires_at is not None:
            request.expires_at.FromDatetime(expires_at)
        return await self._unary(
            lambda stub: stub.CreateApiKey, request, timeout, metadata, retry=False
        )

    @translate_rpc_errors
    async def list_api_keys(
        self, *, owner: str = "", timeout: float | None = None, metadata: CallMetadata = ()
    ) -> list[apikeys_pb2.ApiKey]:
        """Your API keys with their usage (an admin: everyone's, or ``owner``'s); never
        their secrets."""
        request = apikeys_pb2.ListApiKeysRequest(owner=owner)
        answer = await self._unary(
            lambda stub: stub.ListApiKeys, request, timeout, metadata, retry=True
        )
        return list(answer.api_keys)

    @translate_rpc_errors
    async def revoke_api_key(
        self,
        *,
        name: str = "",
        key_id: str = "",
        owner: str = "",
        timeout: float | None = None,
        metadata: CallMetadata = (),
    ) -> apikeys_pb2.ApiKey:
        """Revokes an API key, by ``name`` (yours, or ``owner``'s for an admin) or by
        ``key_id`` (a whole key is taken for its id: its secret is not sent). Every
        router refuses it within seconds."""
        request = apikeys_pb2.RevokeApiKeyRequest(name=name, id=_key_id_of(key_id), owner=owner)
        return await self._unary(
            lambda stub: stub.RevokeApiKey, request, timeout, metadata, retry=True
        )

    # ------------------------------------------------------------------ plumbing

    def _connected_stub(self) -> ClusterServiceAsyncStub:
        """The stub over this client's channel, opening the channel on first use."""
        if self._closed:
            raise RuntimeError("this Murmur client is closed; create a new one")
        if self._stub is None:
            _check_certificate_dates(self._config.tls)
            config = self._config
            if self._address != config.address:
                config = dataclasses.replace(config, address=self._address)
            self._channel = secure_channel(config)
            self._stub = cluster_pb2_grpc.ClusterServiceStub(self._channel)
        return self._stub

    def _alternatives(self) -> list[str]:
        """The other nodes known to reach the cluster, in the order to try them."""
        known = [self._config.address, *self._config.fallback_addresses, *self._learned]
        return [address for address in dict.fromkeys(known) if address != self._address]

    def _learn(self, nodes: Iterable[types_pb2.NodeInfo]) -> None:
        """Keeps the nodes' addresses as ones to fall back on: those up first, then
        those that may come back (suspect, dead); not those that left."""
        ranked = sorted(
            (node for node in nodes if node.address and node.state != types_pb2.NODE_STATE_LEFT),
            key=lambda node: node.state not in _UP_STATES,
        )
        learned = []
        for node in ranked:
            try:
                learned.append(validate_node_address(node.address))
            except ConfigError:
                continue
        self._learned = list(dict.fromkeys(learned))

    async def _reachable_stub(self, deadline: float | None = None) -> ClusterServiceAsyncStub:
        """The stub to call now: the current node's, or, when it cannot be reached and
        other nodes are known, the first of those that can (nothing is sent before).

        When none can, the client stays with (or goes back to) the node it had, whose
        call then fails with the usual error. `deadline` (event loop time) bounds the
        search.
        """
        stub = self._connected_stub()
        if self._reachable or not self._alternatives():
            return stub
        async with self._failover_lock:
            if self._reachable:  # another call found a node meanwhile
                return self._connected_stub()
            first = self._address
            for address in [first, *self._alternatives()]:
                if address != self._address:
                    await self._switch_to(address)
                if await self._connects(deadline):
                    self._reachable = True
                    if address != first and self._on_failover is not None:
                        self._on_failover(first, address)
                    return self._connected_stub()
                if deadline is not None and asyncio.get_running_loop().time() >= deadline:
                    break
            if self._address != first:
                await self._switch_to(first)
            return self._connected_stub()

    async def _switch_to(self, address: str) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        self._address = address
        if channel is not None:
            await channel.close(grace=None)
        self._connected_stub()

    async def _connects(self, deadline: float | None) -> bool:
        """Whether the current channel gets a connection within `_CONNECT_PROBE_SECONDS`
        (and before `deadline`); False as soon as the channel reports a failure."""
        channel = self._channel
        if channel is None:
            return False
        loop = asyncio.get_running_loop()
        end = loop.time() + _CONNECT_PROBE_SECONDS
        if deadline is not None:
            end = min(end, deadline)
        state = channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            if state in (
                grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                grpc.ChannelConnectivity.SHUTDOWN,
            ):
                return False
            remaining = end - loop.time()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):
                    await channel.wait_for_state_change(state)
            except TimeoutError:
                return False
            state = channel.get_state(try_to_connect=True)
        return True

    def _after_failure(self, err: grpc.RpcError, stub: ClusterServiceAsyncStub) -> bool:
        """Whether `err` says the node may be gone (UNAVAILABLE, not a refused
        certificate, which asking again cannot help); if so, the next call makes sure
        the node can be reached before it sends anything."""
        gone = err.code() == grpc.StatusCode.UNAVAILABLE and not is_tls_handshake_failure(err)
        if gone and stub is self._stub:
            self._reachable = False
        return gone

    async def _unary(
        self,
        method: Callable[
            [ClusterServiceAsyncStub], grpc.aio.UnaryUnaryMultiCallable[_Request, _Response]
        ],
        request: _Request,
        timeout: float | None,
        metadata: CallMetadata,
        *,
        retry: bool,
        failover: bool = True,
    ) -> _Response:
        """Makes one unary call; if `retry`, repeats it while the node is UNAVAILABLE.

        Only calls whose repetition cannot do anything twice pass `retry=True`; they
        may be repeated on another node when theirs went away. All attempts share the
        one deadline, and a pause that would pass it is not taken. With `failover`
        false, the call stays on the node the client has.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._config.timeout if timeout is None else timeout)
        policy = self._config.retry
        attempts_left = policy.max_attempts if retry else 1
        backoff = policy.initial_backoff
        while True:
            attempts_left -= 1
            stub = await self._reachable_stub(deadline) if failover else self._connected_stub()
            remaining = max(deadline - loop.time(), 0.0)
            try:
                return await method(stub)(request, timeout=remaining, metadata=tuple(metadata))
            except grpc.RpcError as err:
                pause = random.uniform(backoff / 2, backoff)
                # A refused certificate is UNAVAILABLE too, but asking again cannot help.
                retryable = self._after_failure(err, stub)
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


def _random_key() -> str:
    """A fresh idempotency key: a random (version 4) UUID, as ``str(uuid.uuid4())``
    writes it, made without the uuid module, whose import (with platform's) costs a
    CLI command's start-up more than a millisecond."""
    octets = bytearray(os.urandom(16))
    octets[6] = (octets[6] & 0x0F) | 0x40  # version 4
    octets[8] = (octets[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = octets.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _key_id_of(text: str) -> str:
    """A key's id, from its id or from the whole key (``mur_<id>_<secret>``)."""
    if text.startswith("mur_"):
        return text[len("mur_") :].partition("_")[0]
    return text
