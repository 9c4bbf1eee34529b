"""`ClusterJobs`: the replicated job queue as any node's ClusterService sees it.

Writes (a submission, a cancel) become control commands (node/control/queue). The leader
proposes them to Raft and answers once a quorum of voters has them; any other node
forwards the command to the leader over ``NodeService.Propose``, after checking the
caller's request itself, so the leader only ever sees well-formed commands from
nodes; concurrent commands share a call (node/control/queue/proposal_forwarder.py). Reads
are answered by the leader, whose state is the newest: the node a client reached
answers itself when it leads, and asks the leader otherwise, so a client always
reads its own writes whichever node it talks to.

Jobs the queue forgot (ended longer ago than the cluster's job retention) are
read from the answering node's archive (node/control/queue/job_archive.py): ``GetJob`` falls
back to it, ``ListJobs`` with ``include_archived`` merges it in, in submit order.

Every applied command's result passes here on every node (:meth:`ClusterJobs.applied`):
a command the control state could not apply (a bug, which it survives) is logged
here with its traceback and counted, as are job counts no leader answered
(``ClusterJobs.stats``).

While no leader is known (an election is under way), calls wait up to
``LEADER_PATIENCE_SECONDS`` for one, which covers a failover; then they fail with
UNAVAILABLE, and a retry later is safe: submissions carry an idempotency key, made
up by the node when the client gave none, so a forward repeated after a lost
answer never makes a second job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import grpc
import grpc.aio

from murmur.node.broadcast import Broadcaster
from murmur.node.control.consensus.errors import NotLeaderError
from murmur.node.control.consensus.leadership import Leadership
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.queue.api_keys import api_key_message
from murmur.node.control.queue.array_view import array_message, with_task_view
from murmur.node.control.queue.commands import Command, to_message
from murmur.node.control.queue.convert import job_message, service_message
from murmur.node.control.queue.job_archive import JobArchive
from murmur.node.control.queue.job_listing import (
    Entry,
    listed,
    matches,
    page_of,
    parse_page_token,
)
from murmur.node.control.queue.proposal_forwarder import ProposalForwarder, refusal_error
from murmur.node.control.queue.protocol_gate import ProtocolGate
from murmur.node.control.queue.records import ClusterJob
from murmur.node.control.queue.results import ApplyResult
from murmur.node.control.queue.state import ControlState
from murmur.node.control.queue.user_certificates import IssuedUserCertificate
from murmur.node.deny_list import Revocation
from murmur.node.errors import InvalidArgumentError, NodeError, NotFoundError, UnavailableError
from murmur.node.jobspec import states as job_states
from murmur.node.membership.transport import PeerTransport
from murmur.scheduler.fair_share import DAY_US, decayed_usage, fair_share, share_key
from murmur.v1 import apikeys_pb2, cluster_pb2, types_pb2

if TYPE_CHECKING:
    from murmur.v1.cluster_pb2_grpc import ClusterServiceAsyncStub

_log = logging.getLogger("murmur.jobs")

T = TypeVar("T")

LEADER_PATIENCE_SECONDS = 5.0
"""How long a call waits for a leader: several failovers' worth (p99 about 1 s)."""

FORWARD_TIMEOUT_SECONDS = 2.0
"""Deadline of a call forwarded to the leader. A commit takes milliseconds; a
leader that does not answer in 2 s has died or lost its voters, and the call is
tried again (with the same idempotency key) on whoever leads by then."""

RETRY_PAUSE_SECONDS = 0.05


@dataclasses.dataclass(slots=True)
class ClusterJobsStats:
    """Counters since this node started, for logs, status and tests."""

    apply_failures: int = 0
    """Committed commands the control state could not apply (a bug): each logged
    with its traceback, on every node that applied it."""
    counts_unanswered: int = 0
    """Job counts this node asked the leader for and did not get: each logged, and
    answered empty."""


def refused_by_peer(exc: grpc.aio.AioRpcError, who: str) -> Exception:
    """A forwarded call's failure as this node's error (see :func:`refusal_error`)."""
    return refusal_error(exc.code(), exc.details() or "", who)


class ClusterJobs:
    """The cluster's jobs, through whichever node leads.

    Args:
        consensus: this node's Raft.
        control: this node's replica of the control state (current on the leader).
        peers: the shared peer channels.
        leadership: who leads, as this node can tell (own Raft, else gossip).
        waiting: the leader's latest "why it waits" and queue position per job.
        archive: this node's archive of forgotten jobs; None: none is kept or read.
        gate: the control protocol's gating (node/control/queue/protocol_gate.py): a
            command some node would not read is refused here, before it is sent to
            the leader; None: none (the leader's own gate still holds).
    """

    def __init__(
        self,
        *,
        consensus: ConsensusRunner,
        control: ControlState,
        peers: PeerTransport,
        leadership: Callable[[], Leadership],
        waiting: Callable[[], Mapping[str, tuple[str, int]]],
        archive: JobArchive | None = None,
        gate: ProtocolGate | None = None,
    ) -> None:
        self._consensus = consensus
        self._gate = gate
        self._archive = archive
        self._control = control
        self._peers = peers
        self._leadership = leadership
        self._waiting = waiting
        self._forwarder = ProposalForwarder(peers.node_stub, timeout=FORWARD_TIMEOUT_SECONDS)
        self.updates: Broadcaster[types_pb2.Job] = Broadcaster(queue_size=4096)
        """Jobs as they change, on the leader (see :meth:`applied`)."""
        self._stats = ClusterJobsStats()

    @property
    def stats(self) -> ClusterJobsStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats)

    # --- conversions -----------------------------------------------------------------

    def message(self, job: ClusterJob) -> types_pb2.Job:
        reason, position = self._waiting().get(job.id, ("", 0))
        if not reason and job.state == job_states.PENDING:
            # Not in the last plan: held back (a dependency, its array's %P), or new.
            reason = self._control.hold_reason(job)
        message = job_message(job, queue_position=position, waiting_reason=reason)
        return with_task_view(message, job)

    def entry_message(self, entry: Entry) -> types_pb2.Job:
        """A listing's record: a job's, or a whole array's (its id the array's)."""
        if isinstance(entry, ClusterJob):
            return self.message(entry)
        return array_message(entry, self._control.job)

    def outcome(self, result: object) -> types_pb2.Job:
        """The job a committed command made or changed, or its refusal raised; an
        empty Job for a command that names none (a drain)."""
        if not isinstance(result, ApplyResult):
            raise TypeError(f"the control state answered {result!r}")
        error = result.exception()
        if error is not None:
            raise error
        if result.job is None:
            return types_pb2.Job()
        return self.message(result.job)

    def archived_message(self, job: ClusterJob) -> types_pb2.Job:
        message = with_task_view(job_message(job), job)
        message.archived = True
        return message

    def applied(self, result: object) -> None:
        """Every applied command's result (the runner's ``on_applied``): every node
        logs a command its state could not apply and archives the jobs it forgot;
        the leader tells its watchers about the jobs it changed."""
        if not isinstance(result, ApplyResult):
            return
        if result.failure is not None:
            self._stats.apply_failures += 1
            _log.error(
                "a committed command could not be applied: %s",
                result.message,
                exc_info=result.failure,
                extra={"event": "jobs.apply_failed", "failures": self._stats.apply_failures},
            )
        if result.forgotten and self._archive is not None:
            self._archive.add(result.forgotten)
        if not self._consensus.is_leader or not self.updates.subscriber_count:
            return
        for job in result.changed:
            self.updates.publish(self.message(job))

    def publish(self, job_ids: list[str]) -> None:
        """Tell watchers about jobs whose waiting reason or position moved."""
        if not self.updates.subscriber_count:
            return
        for job_id in job_ids:
            job = self._control.job(job_id)
            if job is not None:
                self.updates.publish(self.message(job))

    # --- writes ----------------------------------------------------------------------

    async def propose(self, command: Command) -> types_pb2.Job:
        """Commit ``command`` through the leader; returns the job it made or changed.

        Raises:
            UnavailableError: no leader took it within ``LEADER_PATIENCE_SECONDS``.
            UpgradeInProgressError: a node of the cluster does not speak the control
                protocol level it needs (or this one does not know all of it).
            NodeError: the control state refused it (not found, not allowed, ended).
        """
        message = to_message(command)
        if self._gate is not None:
            self._gate.check(message)
        data = message.SerializeToString(deterministic=True)  # commands.encode
        return await self._with_leader(lambda: self._propose_once(data))

    async def commit(self, command: Command) -> None:
        """Commit a command that names no job (``SetNodeDrain``) through the leader,
        as :meth:`propose` does.

        Raises:
            UnavailableError: no leader took it within ``LEADER_PATIENCE_SECONDS``.
            NodeError: the control state refused it.
        """
        await self.propose(command)

    async def propose_here(self, commands: Sequence[bytes]) -> list[types_pb2.Job | Exception]:
        """The leader's side of a forwarded batch (``NodeService.Propose``): each
        command's job, or the error it was refused with, in order."""
        outcomes: list[types_pb2.Job | Exception] = []
        for result in await self._consensus.propose_all(commands):
            if isinstance(result, Exception):  # not committed: NotLeader, timeout
                outcomes.append(result)
                continue
            try:
                outcomes.append(self.outcome(result))
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def _propose_once(self, data: bytes) -> types_pb2.Job:
        if self._consensus.is_leader:
            return self.outcome(await self._consensus.propose(data))
        return await self._forwarder.forward(self._leader_address(), data)

    async def close(self) -> None:
        """Stop forwarding: calls in flight are cancelled."""
        await self._forwarder.close()

    # --- reads -----------------------------------------------------------------------

    async def get(self, job_id: str) -> types_pb2.Job:
        async def once() -> types_pb2.Job:
            if self._consensus.state_is_current():
                job = self._control.job(job_id)
                if job is not None:
                    return self.message(job)
                array = self._control.array(job_id)
                if array is not None:
                    return array_message(array, self._control.job)
                archived = await self._archive.job(job_id) if self._archive else None
                if archived is None:
                    raise NotFoundError(f"no job {job_id!r}")
                return self.archived_message(archived)
            return await self._forward(
                lambda stub: stub.GetJob(
                    cluster_pb2.GetJobRequest(id=job_id), timeout=FORWARD_TIMEOUT_SECONDS
                )
            )

        return await self._with_leader(once)

    async def list(self, request: cluster_pb2.ListJobsRequest) -> cluster_pb2.ListJobsResponse:
        """One page of jobs in submit order; the request was checked by the caller."""

        async def once() -> cluster_pb2.ListJobsResponse:
            if not self._consensus.state_is_current():
                return await self._forward(
                    lambda stub: stub.ListJobs(request, timeout=FORWARD_TIMEOUT_SECONDS)
                )
            token = parse_page_token(request.page_token)
            entries = listed(self._control, request)
            archived: set[str] = set()
            if request.include_archived and self._archive is not None:
                old = await self._archive.jobs(
                    # A token inside an entry: that entry's archived jobs too.
                    after_submit_order=token.after - (1 if token.within else 0),
                    states=[job_states.from_proto(state) for state in request.states],
                    user=request.user or None,
                    queue=request.queue or None,
                    limit=request.limit,
                )
                live = {entry.id for entry in entries}
                ids = set(request.ids)
                archived = {
                    job.id for job in old if job.id not in live and matches(job, request, ids)
                }
                merged = entries + [job for job in old if job.id in archived]
                entries = sorted(merged, key=lambda entry: entry.submit_order)
            page, next_token = page_of(entries, token, request.limit)
            return cluster_pb2.ListJobsResponse(
                jobs=[
                    self.archived_message(entry)
                    if entry.id in archived and isinstance(entry, ClusterJob)
                    else self.entry_message(entry)
                    for entry in page
                ],
                next_page_token=next_token,
            )

        return await self._with_leader(once)

    async def lab_policy(self) -> cluster_pb2.LabPolicyInfo:
        """The lab policy in force: this node's replica when it is current, else the
        leader's."""

        async def once() -> cluster_pb2.LabPolicyInfo:
            if not self._consensus.state_is_current():
                return await self._forward(
                    lambda stub: stub.GetPolicy(
                        cluster_pb2.GetPolicyRequest(), timeout=FORWARD_TIMEOUT_SECONDS
                    )
                )
            record = self._control.lab_policy_record
            info = cluster_pb2.LabPolicyInfo()
            if record is not None:
                info.text, info.version, info.applied_by = record.text, record.index, record.by
                info.applied_at.FromMicroseconds(record.at_us)
            return info

        return await self._with_leader(once)

    async def users(self) -> cluster_pb2.ListUsersResponse:
        """Every user certificate the log records, each with the revocation that
        denies it if any: this node's replica when it is current, else the leader's.
        Everything is in it; what a caller may not see is the handler's to clear."""

        async def once() -> cluster_pb2.ListUsersResponse:
            if not self._consensus.state_is_current():
                return await self._forward(
                    lambda stub: stub.ListUsers(
                        cluster_pb2.ListUsersRequest(), timeout=FORWARD_TIMEOUT_SECONDS
                    )
                )
            return user_listing(
                self._control.user_certificates.entries(), self._control.revocations()
            )

        return await self._with_leader(once)

    async def services(self) -> cluster_pb2.ListServicesResponse:
        """Every service with its replicas' jobs (their state, node and why): this
        node's replica when it is current, else the leader's. Readiness and ports
        are not the log's: the caller adds them from gossip."""

        async def once() -> cluster_pb2.ListServicesResponse:
            if not self._consensus.state_is_current():
                return await self._forward(
                    lambda stub: stub.ListServices(
                        cluster_pb2.ListServicesRequest(), timeout=FORWARD_TIMEOUT_SECONDS
                    )
                )
            return cluster_pb2.ListServicesResponse(
                services=[
                    service_message(record, self._control.job)
                    for record in self._control.services()
                ]
            )

        return await self._with_leader(once)

    async def api_keys(self, owner: str) -> apikeys_pb2.ListApiKeysResponse:
        """``owner``'s API keys (every key when empty), with their usage: this node's
        replica when it is current, else the leader's (asked as this node, which
        checked the caller may see them)."""

        async def once() -> apikeys_pb2.ListApiKeysResponse:
            if not self._consensus.state_is_current():
                return await self._forward(
                    lambda stub: stub.ListApiKeys(
                        apikeys_pb2.ListApiKeysRequest(owner=owner),
                        timeout=FORWARD_TIMEOUT_SECONDS,
                    )
                )
            records = self._control.api_keys.records(owner or None)
            return apikeys_pb2.ListApiKeysResponse(api_keys=[api_key_message(k) for k in records])

        return await self._with_leader(once)

    async def usage(self, request: cluster_pb2.GetUsageRequest) -> cluster_pb2.GetUsageResponse:
        """GPU-hours by user (and group) since ``request.since``, with fair-share
        factors: this node's replica when it is current, else the leader's."""

        since_us = usage_since_us(request)

        async def once() -> cluster_pb2.GetUsageResponse:
            if not self._consensus.state_is_current():
                return await self._forward(
                    lambda stub: stub.GetUsage(request, timeout=FORWARD_TIMEOUT_SECONDS)
                )
            return usage_report(
                self._control, since_us=since_us, group=request.group,
                now_us=time.time_ns() // 1000,
            )  # fmt: skip

        return await self._with_leader(once)

    async def counts(self) -> dict[str, int]:
        """Jobs by state name (as ``ClusterStatus.jobs_by_state``): from this node's
        replica when it is a voter (at most a heartbeat behind), else the leader's;
        empty when no leader answers (logged, and counted in :attr:`stats`)."""
        if self._consensus.state_is_current() or self._consensus.is_voter:
            return {state: n for state, n in self._control.counts_by_state().items() if n}
        try:
            status = await self._forward(
                lambda stub: stub.GetStatus(cluster_pb2.GetStatusRequest(), timeout=1.0)
            )
        except Exception as exc:
            self._note_counts_unanswered(exc)
            return {}
        return dict(status.jobs_by_state)

    def _note_counts_unanswered(self, error: Exception) -> None:
        self._stats.counts_unanswered += 1
        extra = {"event": "jobs.counts_unanswered", "failures": self._stats.counts_unanswered}
        if isinstance(error, NodeError):  # no leader known, or it did not answer
            _log.info("job counts unanswered: %s", error, extra=extra)
        else:  # a bug: its traceback says where
            _log.error("job counts failed", exc_info=error, extra=extra)

    async def watch(
        self, request: cluster_pb2.WatchJobsRequest
    ) -> AsyncGenerator[types_pb2.Job, None]:
        """Every matching job, then each change. Off the leader, the leader's stream
        is relayed; when it ends (the leader changed), the client is told to retry."""
        if not self._consensus.state_is_current():
            address = self._leader_address_or_unavailable()
            try:
                async for relayed in self._peers.cluster_stub(address).WatchJobs(request):
                    yield relayed
            except grpc.aio.AioRpcError as exc:
                raise refused_by_peer(exc, "the leader") from None
            raise UnavailableError("the leader's job stream ended; reconnect to follow on")
        async with self.updates.subscribe() as updates:
            folded: set[str] = set()
            for current in self._control.jobs():
                array = self._control.arrays.of(current) if request.fold_arrays else None
                if array is None:
                    yield self.message(current)
                elif array.id not in folded:
                    folded.add(array.id)
                    yield array_message(array, self._control.job)
            while True:
                update = await updates.get()
                if request.fold_arrays and update.array.HasField("task_index"):
                    array = self._control.array(update.array.array_id)
                    if array is not None:
                        yield array_message(array, self._control.job)
                        continue
                yield update

    async def job_events(self, job_id: str, since_id: int) -> AsyncGenerator[types_pb2.Event, None]:
        """The job's story (its history, oldest first, after ``since_id``), then each
        new line as the job changes.

        Raises:
            NotFoundError: no such job.
        """
        last = since_id
        job = await self.get(job_id)
        for event in job.history:
            if event.id > last:
                last = event.id
                yield event
        async with contextlib.aclosing(self.watch(cluster_pb2.WatchJobsRequest())) as updates:
            async for update in updates:
                if update.id != job_id:
                    continue
                for event in update.history:
                    if event.id > last:
                        last = event.id
                        yield event

    # --- plumbing --------------------------------------------------------------------

    async def _with_leader(self, attempt: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + LEADER_PATIENCE_SECONDS
        while True:
            try:
                return await attempt()
            except NotLeaderError as exc:
                _log.debug("waiting for a leader: %s", exc, extra={"event": "jobs.no_leader"})
                if time.monotonic() >= deadline:
                    _log.warning(
                        "no leader took a request within %g s: %s",
                        LEADER_PATIENCE_SECONDS,
                        exc,
                        extra={"event": "jobs.no_leader_in_time"},
                    )
                    raise UnavailableError(
                        f"no leader could answer within {LEADER_PATIENCE_SECONDS:g} s ({exc}); "
                        "a majority of the voters must be up and connected"
                    ) from None
                await asyncio.sleep(RETRY_PAUSE_SECONDS)

    def _leader_address(self) -> str:
        leadership = self._leadership()
        if not leadership.leader_address or leadership.leader == self._consensus.name:
            raise NotLeaderError(None, "no leader is known yet")
        return leadership.leader_address

    def _leader_address_or_unavailable(self) -> str:
        try:
            return self._leader_address()
        except NotLeaderError as exc:
            raise UnavailableError(str(exc)) from None

    async def _forward(self, call: Callable[[ClusterServiceAsyncStub], Awaitable[T]]) -> T:
        address = self._leader_address()
        try:
            return await call(self._peers.cluster_stub(address))
        except grpc.aio.AioRpcError as exc:
            raise refused_by_peer(exc, "the leader") from None


def user_listing(
    issued: Sequence[IssuedUserCertificate], revocations: Sequence[Revocation]
) -> cluster_pb2.ListUsersResponse:
    """The certificates, in issue order, each with the first revocation that denies
    it: its serial's, or its name's made at or after the certificate's start (the
    rule every node enforces, node/deny_list.py)."""
    answer = cluster_pb2.ListUsersResponse()
    for entry in issued:
        record = entry.certificate
        certificate = answer.certificates.add(
            name=record.name, role=record.role, serial=record.serial, issued_by=record.issued_by
        )
        certificate.not_before.FromMicroseconds(record.not_before_us)
        certificate.not_after.FromMicroseconds(record.not_after_us)
        for revocation in revocations:
            if revocation.serial == record.serial or (
                revocation.name == record.name and record.not_before_us <= revocation.revoked_at_us
            ):
                certificate.revoked = True
                certificate.revoked_at.FromMicroseconds(revocation.revoked_at_us)
                certificate.revoked_by = revocation.by
                certificate.revoke_reason = revocation.reason
                break
    return answer


def usage_since_us(request: cluster_pb2.GetUsageRequest) -> int:
    """The request's ``since`` in microseconds (0 when unset).

    Raises:
        InvalidArgumentError: not a time (found by the RPC fuzzer: a Timestamp must
            lie between the years 1 and 9999, else converting it raises).
    """
    if not request.HasField("since"):
        return 0
    try:
        return int(request.since.ToMicroseconds())
    except ValueError as exc:
        raise InvalidArgumentError(f"since is not a valid time: {exc}") from None


def usage_report(
    control: ControlState, *, since_us: int, group: str, now_us: int
) -> cluster_pb2.GetUsageResponse:
    """``murmur usage``: GPU-hours of runs that ended since ``since_us``, per user and
    group, most first, with each one's fair-share factor when the policy has one."""
    lab = control.lab_policy
    since_day = since_us // DAY_US
    hours: dict[tuple[str, str], float] = {}
    for bucket in control.usage_buckets():
        if bucket.day < since_day or (group and bucket.group != group):
            continue
        key = (bucket.user, bucket.group)
        hours[key] = hours.get(key, 0.0) + bucket.gpu_seconds / 3600
    ordered = bool(lab.fair_share_half_life_us)
    shares = (
        fair_share(lab, decayed_usage(control.usage_buckets(), now_us, lab.fair_share_half_life_us))
        if ordered
        else None
    )
    rows = [
        cluster_pb2.UsageRow(
            user=user,
            group=in_group,
            gpu_hours=used,
            fair_share=shares.factor(share_key(user, in_group)) if shares is not None else 0.0,
        )
        for (user, in_group), used in sorted(hours.items(), key=lambda item: (-item[1], item[0]))
    ]
    by_project: dict[str, float] = {}
    for project, day, seconds in control.project_usage():
        if day >= since_day:
            by_project[project] = by_project.get(project, 0.0) + seconds / 3600
    projects = [
        cluster_pb2.ProjectUsageRow(project=project, gpu_hours=used)
        for project, used in sorted(by_project.items(), key=lambda item: (-item[1], item[0]))
    ]
    return cluster_pb2.GetUsageResponse(rows=rows, fair_share=ordered, projects=projects)
