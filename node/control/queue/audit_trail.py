"""`AuditTrail`: one audit trail for the cluster, in the control log, on every voter.

Three duties, one per direction:

* **Outbox → log.** Every audited call is first written to the local ``audit``
  table of the node the client reached (durable before the answer leaves, as
  always): that table is the node's *outbox*. A shipper task proposes what it holds
  past the last id shipped as one ``RecordAudit`` command per batch (every call that
  arrived while the previous batch was committed goes in the next one), through the
  same path as job commands (the leader, or the forwarder to it). An audited call
  answers once its record is durable in the outbox (``SHIP_WAIT_SECONDS``, 0 by
  default, can make it wait for the commit too); the shipper, woken by the record,
  commits it within one round, so the trail lags the calls by milliseconds and a
  read through a node first flushes that node's outbox. A node that cannot reach a
  quorum keeps its records in the outbox; they are shipped when the log takes them
  again, or after a restart (the cursor is in
  ``meta``; the control state skips a call whose id it already applied from that
  origin, so shipping twice records once).
* **Log → store.** Every voter (and learner) applies ``RecordAudit`` into its
  control state, which chains the calls (``audit_chain.py``); the new entries come
  out in the apply's result (:meth:`applied`) and are written behind it to the
  node's ``audit_chain`` table. A write lost to a crash is written again when the
  log is replayed at the next start, unless a snapshot compacted those entries
  first: the restored chain head is then kept as an anchor, and ``verify`` says
  which entries the node does not hold.
* **Reads.** ``ListAudit`` is answered by the leader's copy (the same answer from
  every node, as jobs are read); ``VerifyAudit`` checks the answering node's own
  copy when it votes (that is the copy on its disk), else the leader's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import grpc
import grpc.aio

from murmur.node.control.consensus.errors import NotLeaderError
from murmur.node.control.consensus.leadership import Leadership
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.queue.audit_chain import (
    AuditCall,
    ChainCheck,
    ChainedAudit,
    ChainReport,
)
from murmur.node.control.queue.commands import MAX_AUDIT_CALLS, Command, RecordAudit
from murmur.node.control.queue.proposal_forwarder import refusal_error
from murmur.node.control.queue.results import ApplyResult
from murmur.node.control.queue.state import ControlState
from murmur.node.errors import InvalidArgumentError, UnavailableError
from murmur.node.membership.transport import PeerTransport
from murmur.storage import AuditEntry, AuditRecord, ChainedAuditRecord, Store, StoreError
from murmur.storage.timestamps import from_micros, to_micros
from murmur.v1 import cluster_pb2, types_pb2

_log = logging.getLogger("murmur.audit")

T = TypeVar("T")

SHIP_WAIT_SECONDS = 0.0
"""How long an audited call waits for its record to be committed before it answers
(the record then waits in the outbox). 0, the default: it answers once its record
is durable in the outbox, and the shipper, woken by it, commits it within one round
through the leader. Waiting made every audited call one commit slower: submissions
through gRPC fell 20-40 % (docs/benchmarks.md, "Audit trail"), below the targets."""

READ_FLUSH_SECONDS = 1.0
"""How long an audit read waits for this node's own outbox to reach the log first,
so that a caller reading through the node it just used finds its own calls."""

POLL_SECONDS = 30.0
"""The shipper also looks at the outbox this often: a net under a missed wake-up
(every writer, the API's interceptor and the join listener, goes through
:meth:`AuditTrail.record`, which wakes it). An idle node does not wake for it."""

RETRY_SECONDS = 1.0
"""After a failed shipment (no leader, no quorum), the next try."""

CURSOR_WRITE_SECONDS = 1.0
"""The shipped cursor goes to ``meta`` at most this often (a stale one only means
records shipped again, which the log skips)."""

LEADER_PATIENCE_SECONDS = 5.0
RETRY_PAUSE_SECONDS = 0.05
RELAY_TIMEOUT_SECONDS = 10.0
WRITE_BATCH = 1000
VERIFY_PAGE = 5000
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_TARGET_CHARS = 256
MAX_DETAIL_CHARS = 1024

SHIPPED_KEY = "audit-shipped-id"
INCARNATION_KEY = "audit-incarnation"


def call_of(record: AuditRecord, node: str) -> AuditCall:
    """An outbox record as the call the log carries (long texts cut: entries stay small)."""
    return AuditCall(
        origin_id=record.id,
        node=node,
        time_us=to_micros(record.time),
        user=record.user,
        role=record.role,
        action=record.action,
        target=record.target[:MAX_TARGET_CHARS],
        result=record.result,
        detail=record.detail[:MAX_DETAIL_CHARS],
    )


def stored_of(entry: ChainedAudit) -> ChainedAuditRecord:
    call = entry.call
    return ChainedAuditRecord(
        seq=entry.seq,
        origin=entry.origin,
        origin_id=call.origin_id,
        node=call.node,
        time_us=call.time_us,
        user=call.user,
        role=call.role,
        action=call.action,
        target=call.target,
        result=call.result,
        detail=call.detail,
        hash=entry.hash,
    )


def chained_of(record: ChainedAuditRecord) -> ChainedAudit:
    call = AuditCall(
        origin_id=record.origin_id,
        node=record.node,
        time_us=record.time_us,
        user=record.user,
        role=record.role,
        action=record.action,
        target=record.target,
        result=record.result,
        detail=record.detail,
    )
    return ChainedAudit(record.seq, record.origin, call, record.hash)


def _role(name: str) -> types_pb2.Role.ValueType:
    try:
        return types_pb2.Role.Value(f"ROLE_{name.upper()}")
    except ValueError:  # a role name from a newer murmur
        return types_pb2.ROLE_UNSPECIFIED


def record_message(record: ChainedAuditRecord) -> types_pb2.AuditRecord:
    message = types_pb2.AuditRecord(
        id=record.seq,
        user=record.user,
        role=_role(record.role),
        action=record.action,
        target=record.target,
        result=record.result,
        detail=record.detail,
        node=record.node,
        hash=record.hash,
    )
    message.time.FromDatetime(from_micros(record.time_us))
    return message


def report_message(node: str, report: ChainReport, log_count: int, log_head: bytes,
                   anchors: Iterable[int]) -> cluster_pb2.VerifyAuditResponse:  # fmt: skip
    return cluster_pb2.VerifyAuditResponse(
        node=node,
        intact=report.intact,
        entries=report.entries,
        first_id=report.first_id,
        last_id=report.last_id,
        head=report.head if report.last_id else b"",
        log_count=log_count,
        log_head=log_head if log_count else b"",
        bad_id=report.bad_id,
        problem=report.problem,
        anchors=sorted(anchors),
    )


@dataclass(slots=True)
class AuditTrailStats:
    shipped: int = 0
    """Calls this node shipped to the log (retries counted again)."""
    ship_failures: int = 0
    """Shipments that failed (no leader, no quorum): each retried."""
    waits_expired: int = 0
    """Audited calls that answered before their record was committed."""


class AuditTrail:
    """This node's part of the cluster's audit trail (see the module's docstring).

    Args:
        commit: commits a command through the leader (``ClusterJobs.commit``).
    """

    def __init__(
        self,
        *,
        store: Store,
        node_name: str,
        control: ControlState,
        consensus: ConsensusRunner,
        peers: PeerTransport,
        leadership: Callable[[], Leadership],
        commit: Callable[[Command], Awaitable[None]],
    ) -> None:
        self._store = store
        self._name = node_name
        self._control = control
        self._consensus = consensus
        self._peers = peers
        self._leadership = leadership
        self._commit = commit
        self._origin = ""
        self._loaded = asyncio.Event()
        self._shipped = 0
        self._cursor_written = 0
        self._cursor_written_at = 0.0
        self._ship_wake = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._unwritten: list[ChainedAudit] = []
        self._write_wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._stored_last: int | None = None
        self._anchored: set[int] = set()
        self.stats = AuditTrailStats()

    # --- outbox → log --------------------------------------------------------------

    async def record(self, entry: AuditEntry) -> None:
        """Write an audited call to the outbox (durable when this returns), then wait
        up to ``SHIP_WAIT_SECONDS`` for it to be committed to the log.

        Raises:
            StoreError: the outbox write failed.
        """
        stored = await self._store.append_audit(entry)
        await self._wait_shipped(stored.id, SHIP_WAIT_SECONDS)

    async def ship_pending(self, wait_seconds: float = READ_FLUSH_SECONDS) -> None:
        """Wait (up to ``wait_seconds``) until everything in the outbox now is in the log."""
        newest = await self._store.list_audit(limit=1)
        if newest:
            await self._wait_shipped(newest[0].id, wait_seconds)

    async def _wait_shipped(self, local_id: int, wait_seconds: float) -> None:
        if self._loaded.is_set() and local_id <= self._shipped:
            return
        self._ship_wake.set()
        if wait_seconds <= 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((local_id, future))
        try:
            await asyncio.wait_for(asyncio.shield(future), wait_seconds)
        except TimeoutError:
            self.stats.waits_expired += 1
        finally:
            if not future.done():
                future.cancel()

    def _release_waiters(self) -> None:
        waiting = []
        for local_id, future in self._waiters:
            if future.done():
                continue
            if local_id <= self._shipped:
                future.set_result(None)
            else:
                waiting.append((local_id, future))
        self._waiters = waiting

    async def _load(self) -> None:
        incarnation = await self._store.get_meta(INCARNATION_KEY)
        if not incarnation:
            incarnation = uuid.uuid4().hex[:12]
            await self._store.set_meta(INCARNATION_KEY, incarnation)
        self._origin = f"{self._name}/{incarnation}"
        cursor = await self._store.get_meta(SHIPPED_KEY)
        self._shipped = max(int(cursor or 0), self._control.audit_origin_last(self._origin))
        self._cursor_written = self._shipped
        self._loaded.set()
        self._release_waiters()

    async def _ship_loop(self) -> None:
        while True:
            self._ship_wake.clear()
            try:
                batch = await self._store.list_audit_after(self._shipped, limit=MAX_AUDIT_CALLS)
            except StoreError as exc:
                _log.warning("could not read the audit outbox: %s", exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            if not batch:
                await self._write_cursor(force=False)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ship_wake.wait(), POLL_SECONDS)
                continue
            command = RecordAudit(self._origin, tuple(call_of(r, self._name) for r in batch))
            try:
                await self._commit(command)
            except Exception as exc:  # no leader, no quorum, refused: kept, tried again
                self.stats.ship_failures += 1
                _log.warning(
                    "could not ship %d audit records to the control log (kept, retrying): %s",
                    len(batch),
                    exc,
                    extra={"event": "audit.ship_failed", "failures": self.stats.ship_failures},
                )
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self.stats.shipped += len(batch)
            self._shipped = batch[-1].id
            self._release_waiters()
            await self._write_cursor(force=False)

    async def _write_cursor(self, *, force: bool) -> None:
        if self._shipped == self._cursor_written:
            return
        now = time.monotonic()
        if not force and now - self._cursor_written_at < CURSOR_WRITE_SECONDS:
            return
        try:
            await self._store.set_meta(SHIPPED_KEY, str(self._shipped))
        except StoreError as exc:
            _log.warning("could not save the audit outbox cursor: %s", exc)
            return
        self._cursor_written, self._cursor_written_at = self._shipped, now

    # --- log → store ---------------------------------------------------------------

    def applied(self, result: object) -> None:
        """Every applied command's result (the runner's ``on_applied``): keeps the
        audit chain's new entries for the store."""
        if isinstance(result, ApplyResult) and result.audited:
            self._unwritten.extend(result.audited)
            self._write_wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._write_wake.wait()
            self._write_wake.clear()
            try:
                await self.flush_chain()
            except StoreError as exc:
                _log.warning(
                    "could not store %d audit chain entries (retrying): %s",
                    len(self._unwritten),
                    exc,
                    extra={"event": "audit.write_failed"},
                )
                await asyncio.sleep(RETRY_SECONDS)
                self._write_wake.set()

    async def flush_chain(self) -> None:
        """Store every chain entry applied so far (and a restored head as an anchor).

        Raises:
            StoreError: the store refused; what was not written stays here.
        """
        async with self._write_lock:
            if self._stored_last is None:
                self._stored_last = await self._store.audit_chain_last_seq()
                self._anchored = set(await self._store.audit_anchors())
            anchor = self._anchor_needed()
            while self._unwritten or anchor is not None:
                batch = self._unwritten[:WRITE_BATCH]
                await self._store.put_audit_chain([stored_of(e) for e in batch], anchor=anchor)
                if anchor is not None:
                    self._anchored.add(anchor[0])
                    anchor = None
                del self._unwritten[: len(batch)]
                if batch:
                    self._stored_last = max(self._stored_last, batch[-1].seq)

    def _anchor_needed(self) -> tuple[int, bytes] | None:
        restored = self._control.audit_restored
        if restored is None or self._stored_last is None:
            return None
        count, head = restored
        if count <= self._stored_last or count in self._anchored:
            return None
        return count, head

    async def flush(self) -> None:
        """On shutdown: the chain entries applied and the outbox cursor, stored.

        Raises:
            StoreError: the store refused.
        """
        await self.flush_chain()
        await self._write_cursor(force=True)

    async def run(self) -> None:
        """Ship the outbox and store the chain, until cancelled."""
        await self._load()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._ship_loop())
            tasks.create_task(self._write_loop())

    # --- reads ---------------------------------------------------------------------

    async def list(self, request: cluster_pb2.ListAuditRequest) -> cluster_pb2.ListAuditResponse:
        """A page of the cluster's trail, newest first, as the leader holds it; this
        node's own outbox is shipped first (up to ``READ_FLUSH_SECONDS``).

        Raises:
            InvalidArgumentError: a limit above ``MAX_PAGE``.
            UnavailableError: no leader answered within ``LEADER_PATIENCE_SECONDS``.
        """
        _check_page(request)
        await self.ship_pending()
        return await self._here_or_leader(
            lambda: self.list_here(request),
            lambda address: self._peers.node_stub(address).ListAudit(
                request, timeout=RELAY_TIMEOUT_SECONDS
            ),
        )

    async def list_here(
        self, request: cluster_pb2.ListAuditRequest
    ) -> cluster_pb2.ListAuditResponse:
        """The page from this node's copy; only the leader's is sure to be current.

        Raises:
            UnavailableError: this node does not lead (a relay raced an election).
        """
        _check_page(request)
        if not self._consensus.state_is_current():
            raise UnavailableError(f"{self._name} no longer leads; ask again")
        await self.flush_chain()
        since_us = request.since.ToMicroseconds() if request.HasField("since") else None
        records = await self._store.list_audit_chain(
            limit=request.limit or DEFAULT_PAGE,
            before_seq=request.before_id or None,
            user=request.user or None,
            action=request.action or None,
            since_us=since_us,
        )
        return cluster_pb2.ListAuditResponse(
            records=[record_message(record) for record in records], answered_by=self._name
        )

    async def verify(self) -> cluster_pb2.VerifyAuditResponse:
        """Check this node's copy of the chain when it votes, else the leader's."""
        if self._consensus.is_voter:
            return await self.verify_here()
        return await self._here_or_leader(
            self.verify_here,
            lambda address: self._peers.node_stub(address).VerifyAudit(
                cluster_pb2.VerifyAuditRequest(), timeout=RELAY_TIMEOUT_SECONDS
            ),
        )

    async def verify_here(self) -> cluster_pb2.VerifyAuditResponse:
        """Check the chain this node stores, page by page, against the head its
        control state holds."""
        log_count, log_head = self._control.audit_head()
        await self.flush_chain()  # everything applied so far, so up to log_count
        anchors = await self._store.audit_anchors()
        check = ChainCheck(anchors, log_count, log_head)
        after = 0
        while not check.broken:
            page = await self._store.audit_chain_after(after, limit=VERIFY_PAGE)
            if not page:
                break
            check.feed(chained_of(record) for record in page)
            after = page[-1].seq
        report = check.finish()
        if not report.intact:
            _log.error(
                "the audit trail on this node does not verify: %s",
                report.problem,
                extra={"event": "audit.verify_failed", "bad_id": report.bad_id},
            )
        return report_message(self._name, report, log_count, log_head, anchors)

    async def _here_or_leader(
        self,
        here: Callable[[], Awaitable[T]],
        relay: Callable[[str], Awaitable[T]],
    ) -> T:
        deadline = time.monotonic() + LEADER_PATIENCE_SECONDS
        while True:
            if self._consensus.state_is_current():
                return await here()
            leadership = self._leadership()
            if leadership.leader_address and leadership.leader != self._name:
                try:
                    return await relay(leadership.leader_address)
                except grpc.aio.AioRpcError as exc:
                    error = refusal_error(exc.code(), exc.details() or "", "the leader")
                    if not isinstance(error, NotLeaderError):
                        raise error from None
            if time.monotonic() >= deadline:
                raise UnavailableError(
                    f"no leader answered within {LEADER_PATIENCE_SECONDS:g} s; "
                    "a majority of the voters must be up and connected"
                )
            await asyncio.sleep(RETRY_PAUSE_SECONDS)


def _check_page(request: cluster_pb2.ListAuditRequest) -> None:
    if request.limit > MAX_PAGE:
        raise InvalidArgumentError(f"limit must be at most {MAX_PAGE}")
    # Found by the RPC fuzzer: both crashed the call (SQLite's integers are 64-bit
    # signed; a Timestamp must lie between the years 1 and 9999).
    if request.before_id > MAX_SEQ:
        raise InvalidArgumentError(f"before_id must be at most {MAX_SEQ}")
    if request.HasField("since"):
        try:
            request.since.ToMicroseconds()
        except ValueError as exc:
            raise InvalidArgumentError(f"since is not a valid time: {exc}") from None


MAX_SEQ = 2**63 - 1
