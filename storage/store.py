"""The node's local store: one SQLite file per node, behind one async facade.

Why it is built this way:

- **One writer.** All statements go through one connection, one at a time, under an
  ``asyncio.Lock``, and every write runs in an explicit ``BEGIN IMMEDIATE`` ... ``COMMIT``
  (rolled back on any error or cancellation). SQLite allows one writer per file anyway;
  serializing in the process turns would-be ``SQLITE_BUSY`` races into a queue, makes
  check-then-write sequences (consuming a join token) atomic, and ``IMMEDIATE`` takes
  the write lock up front, so another process touching the file waits (busy_timeout)
  instead of failing mid-transaction. Reads take the same lock so they never see
  another task's uncommitted writes on the shared connection.
- **WAL.** Readers in other processes (a backup, ``sqlite3`` for debugging) do not
  block the writer, and a commit appends to the log instead of rewriting pages in
  place, which keeps a crash mid-write from touching committed data.
- **synchronous=FULL.** In WAL mode the default (NORMAL) may lose the last commits on
  power loss. With FULL every commit is fsynced before it returns, so a write the
  store has acknowledged survives kill -9 and power loss: runs, audit records and used
  join tokens are facts other nodes and users act on.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import aiosqlite

from murmur.storage.connection import connect, translate_sqlite_error
from murmur.storage.errors import StoreClosedError
from murmur.storage.migrator import apply_migrations, read_schema_version
from murmur.storage.records import (
    ArchivedJobRecord,
    AuditEntry,
    AuditRecord,
    ChainedAuditRecord,
    DatasetRecord,
    EventRecord,
    JobRecord,
    JoinTokenRecord,
    RaftDurableState,
    RaftEntryRecord,
    RaftSnapshotRecord,
    RevocationRecord,
    RunRecord,
)
from murmur.storage.repositories import (
    archived_jobs,
    audit,
    audit_chain,
    datasets,
    events,
    jobs,
    join_tokens,
    meta,
    raft,
    revocations,
    runs,
)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventDraft:
    """An event to append as part of a larger transaction."""

    kind: str
    subject: str
    message: str
    job_state: str = ""


async def _append_draft(connection: aiosqlite.Connection, draft: EventDraft) -> EventRecord:
    return await events.append(
        connection,
        time=datetime.now(UTC),
        kind=draft.kind,
        subject=draft.subject,
        message=draft.message,
        job_state=draft.job_state,
    )


class Store:
    """A node's SQLite store. Create it with ``await Store.open(path)``.

    Use it as an async context manager, or call ``close()`` on shutdown.
    """

    def __init__(self, path: Path, connection: aiosqlite.Connection) -> None:
        """Wrap an already configured and migrated connection; use ``open()`` instead."""
        self.path = path
        self._connection: aiosqlite.Connection | None = connection
        self._lock = asyncio.Lock()
        self._audit_queue: list[tuple[AuditEntry, asyncio.Future[AuditRecord]]] = []
        self._audit_writer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: Path) -> Store:
        """Open the store at ``path``, creating it and applying migrations as needed.

        Raises:
            StoreOpenError: the file or its directory cannot be opened for writing.
            StoreCorruptError: the file is not an SQLite database or is damaged.
            StoreVersionError: the file was written by a newer murmur.
        """
        path = Path(path)
        connection = await connect(path)
        try:
            await apply_migrations(connection, path)
        except BaseException:
            await connection.close()
            raise
        return cls(path, connection)

    async def close(self) -> None:
        """Write the audit entries still waiting, checkpoint the WAL into the main file
        and close. Calling it again does nothing.

        An entry appended just before (its caller may have given up waiting) is
        written all the same, and no audit writer outlives the store.
        """
        await self._audit_writer_done()
        async with self._lock:
            connection, self._connection = self._connection, None
            if connection is None:
                return
            try:
                await connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as error:
                # Committed data is safe in the WAL; SQLite replays it on the next open.
                _log.warning("store at %s: WAL checkpoint on close failed: %s", self.path, error)
            finally:
                await connection.close()
        # An entry that came while the store closed finds it closed: its caller is told.
        await self._audit_writer_done()

    async def _audit_writer_done(self) -> None:
        """Wait until the audit writer has ended: it ends once nothing waits."""
        while (writer := self._audit_writer) is not None and not writer.done():
            # Not cancelled when close is: entries of other callers are in it.
            await asyncio.wait({writer})

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- access to the connection ------------------------------------------------------

    def _open_connection(self) -> aiosqlite.Connection:
        if self._connection is None:
            raise StoreClosedError(self.path)
        return self._connection

    def _translated(self, error: BaseException) -> BaseException:
        if isinstance(error, sqlite3.Error):
            return translate_sqlite_error(self.path, error) or error
        return error

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, for statements that only read."""
        async with self._lock:
            connection = self._open_connection()
            try:
                yield connection
            except sqlite3.Error as error:
                translated = self._translated(error)
                if translated is error:
                    raise
                raise translated from error

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection inside a write transaction, committed when the block ends."""
        async with self._lock:
            connection = self._open_connection()
            try:
                # Inside the try: if cancelled while BEGIN is queued, the rollback queued
                # after it still ends the transaction before the next writer's BEGIN.
                await connection.execute("BEGIN IMMEDIATE")
                yield connection
                await connection.commit()
            except BaseException as error:
                await connection.rollback()
                translated = self._translated(error)
                if translated is error:
                    raise
                raise translated from error

    # -- schema and meta -----------------------------------------------------------

    async def schema_version(self) -> int:
        """The schema version recorded in the file."""
        async with self._reading() as connection:
            return await read_schema_version(connection)

    async def get_meta(self, key: str) -> str | None:
        """The value stored under ``key``, or ``None`` if there is none."""
        async with self._reading() as connection:
            return await meta.get_value(connection, key)

    async def set_meta(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``, replacing any previous value."""
        async with self._writing() as connection:
            await meta.set_value(connection, key, value)

    # -- datasets ------------------------------------------------------------------

    async def add_dataset(self, record: DatasetRecord) -> None:
        """Register a dataset held on this node.

        Raises:
            DatasetExistsError: a dataset with that name is already registered.
        """
        async with self._writing() as connection:
            await datasets.insert(connection, record)

    async def get_dataset(self, name: str) -> DatasetRecord:
        """The dataset called ``name``.

        Raises:
            RecordNotFoundError: no such dataset.
        """
        async with self._reading() as connection:
            return await datasets.get(connection, name)

    async def remove_dataset(self, name: str) -> bool:
        """Unregister the dataset called ``name``; its files are not touched.

        Returns:
            False when no dataset had that name.
        """
        async with self._writing() as connection:
            return await datasets.delete(connection, name)

    async def list_datasets(self) -> list[DatasetRecord]:
        """Every dataset on this node, by name."""
        async with self._reading() as connection:
            return await datasets.list_all(connection)

    # -- runs ----------------------------------------------------------------------

    async def put_run(self, record: RunRecord) -> None:
        """Insert the run, or replace the stored run with the same id."""
        async with self._writing() as connection:
            await runs.upsert(connection, record)

    async def get_run(self, run_id: str) -> RunRecord:
        """The run with id ``run_id``.

        Raises:
            RecordNotFoundError: no such run.
        """
        async with self._reading() as connection:
            return await runs.get(connection, run_id)

    async def list_runs(
        self, *, job_id: str | None = None, active_only: bool = False
    ) -> list[RunRecord]:
        """Runs in creation order; of one job if ``job_id``; only non-terminal if
        ``active_only`` (see ``TERMINAL_RUN_STATES``)."""
        async with self._reading() as connection:
            return await runs.list_runs(connection, job_id=job_id, active_only=active_only)

    async def list_runs_ended_since(self, since: datetime) -> list[RunRecord]:
        """Runs whose end was recorded at or after ``since``, in the order they ended."""
        async with self._reading() as connection:
            return await runs.list_ended_since(connection, since)

    # -- jobs ----------------------------------------------------------------------

    async def record_transition(
        self,
        *,
        job: JobRecord | None = None,
        runs_changed: tuple[RunRecord, ...] = (),
        event: EventDraft | None = None,
    ) -> EventRecord | None:
        """Writes a job's new state, its runs' new states and the event that tells of it,
        all or nothing: after a crash, job, run and history always agree. A job this
        store has no row for yet is inserted (the mirror of a job placed here)."""
        async with self._writing() as connection:
            if job is not None:
                await jobs.upsert(connection, job)
            for run in runs_changed:
                await runs.upsert(connection, run)
            return None if event is None else await _append_draft(connection, event)

    async def get_job(self, job_id: str) -> JobRecord:
        """Raises: RecordNotFoundError: no such job."""
        async with self._reading() as connection:
            return await jobs.get(connection, job_id)

    # -- archived jobs ---------------------------------------------------------------

    async def archive_jobs(self, records: Sequence[ArchivedJobRecord]) -> None:
        """Keep jobs the replicated queue forgot, in one transaction; a job archived
        before is replaced."""
        if not records:
            return
        async with self._writing() as connection:
            await archived_jobs.put_all(connection, records)

    async def get_archived_job(self, job_id: str) -> ArchivedJobRecord:
        """Raises: RecordNotFoundError: no such archived job."""
        async with self._reading() as connection:
            return await archived_jobs.get(connection, job_id)

    async def list_archived_jobs(
        self,
        *,
        after_submit_order: int = 0,
        states: Collection[str] = (),
        user: str | None = None,
        queue: str | None = None,
        limit: int = 100,
    ) -> list[ArchivedJobRecord]:
        """Up to ``limit`` archived jobs after ``after_submit_order``, in submit
        order, matching every filter given (``states`` empty: any state)."""
        async with self._reading() as connection:
            return await archived_jobs.list_page(
                connection,
                after_submit_order=after_submit_order,
                states=states,
                user=user,
                queue=queue,
                limit=limit,
            )

    async def count_archived_jobs(self) -> int:
        async with self._reading() as connection:
            return await archived_jobs.count(connection)

    # -- revocations -----------------------------------------------------------------

    async def add_revocations(self, records: Sequence[RevocationRecord]) -> None:
        """Keep revocations this node learnt, in one transaction; one already kept
        (same log index) stays as it is."""
        if not records:
            return
        async with self._writing() as connection:
            await revocations.add_all(connection, records)

    async def list_revocations(self) -> list[RevocationRecord]:
        """Every revocation kept, in log order."""
        async with self._reading() as connection:
            return await revocations.list_all(connection)

    # -- events --------------------------------------------------------------------

    async def append_event(
        self,
        *,
        kind: str,
        subject: str,
        message: str,
        job_state: str = "",
        time: datetime | None = None,
    ) -> EventRecord:
        """Append an event (at ``time``, default now) and return it with its id."""
        async with self._writing() as connection:
            return await events.append(
                connection,
                time=datetime.now(UTC) if time is None else time,
                kind=kind,
                subject=subject,
                message=message,
                job_state=job_state,
            )

    async def list_events(
        self, *, since_id: int = 0, subject: str | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        """Up to ``limit`` events after ``since_id``, oldest first; pass the last id seen
        as ``since_id`` to follow the log."""
        async with self._reading() as connection:
            return await events.list_since(
                connection, since_id=since_id, subject=subject, limit=limit
            )

    # -- audit ---------------------------------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> AuditRecord:
        """Store an audit entry; it is durable when this returns.

        Group commit: entries that arrive while a batch is being written go together
        in the next transaction, so a burst of audited calls costs one fsync per
        batch rather than one each. A caller that gives up waiting (its RPC was
        cancelled) does not take its entry out: it is written all the same.
        """
        future: asyncio.Future[AuditRecord] = asyncio.get_running_loop().create_future()
        self._audit_queue.append((entry, future))
        if self._audit_writer is None or self._audit_writer.done():
            self._audit_writer = asyncio.create_task(self._write_audit_batches())
        return await asyncio.shield(future)

    async def _write_audit_batches(self) -> None:
        while self._audit_queue:
            batch, self._audit_queue = self._audit_queue, []
            try:
                async with self._writing() as connection:
                    records = await audit.append_all(connection, [entry for entry, _ in batch])
            except BaseException as error:
                for _, waiting in batch:
                    if not waiting.done():
                        waiting.set_exception(error)
                if isinstance(error, asyncio.CancelledError):
                    raise
                continue
            for (_, waiting), record in zip(batch, records, strict=True):
                if not waiting.done():
                    waiting.set_result(record)

    async def list_audit(
        self, *, limit: int = 100, before_id: int | None = None, user: str | None = None
    ) -> list[AuditRecord]:
        """Up to ``limit`` audit records, newest first; pass the last (smallest) id of a
        page as ``before_id`` for the next page, and ``user`` to see one user's."""
        async with self._reading() as connection:
            return await audit.list_page(connection, limit=limit, before_id=before_id, user=user)

    async def list_audit_after(self, after_id: int, *, limit: int = 500) -> list[AuditRecord]:
        """Up to ``limit`` local audit records after ``after_id``, oldest first."""
        async with self._reading() as connection:
            return await audit.list_after(connection, after_id=after_id, limit=limit)

    # -- audit chain (the cluster's trail, as this voter applied it) ----------------

    async def put_audit_chain(
        self,
        records: Sequence[ChainedAuditRecord],
        *,
        anchor: tuple[int, bytes] | None = None,
    ) -> None:
        """Store chain entries in one transaction (one already stored stays as it
        is), and ``anchor`` (seq, hash), a restored chain head, if given."""
        if not records and anchor is None:
            return
        async with self._writing() as connection:
            if anchor is not None:
                await audit_chain.add_anchor(connection, *anchor)
            await audit_chain.put_all(connection, records)

    async def list_audit_chain(
        self,
        *,
        limit: int = 100,
        before_seq: int | None = None,
        user: str | None = None,
        action: str | None = None,
        since_us: int | None = None,
    ) -> list[ChainedAuditRecord]:
        """Up to ``limit`` chain entries matching every filter given, newest first;
        pass the smallest ``seq`` of a page as ``before_seq`` for the next page."""
        async with self._reading() as connection:
            return await audit_chain.list_page(
                connection,
                limit=limit,
                before_seq=before_seq,
                user=user,
                action=action,
                since_us=since_us,
            )

    async def audit_chain_after(
        self, after_seq: int, *, limit: int = 1000
    ) -> list[ChainedAuditRecord]:
        """Up to ``limit`` chain entries after ``after_seq``, in chain order."""
        async with self._reading() as connection:
            return await audit_chain.list_after(connection, after_seq=after_seq, limit=limit)

    async def audit_chain_last_seq(self) -> int:
        """The last chain entry stored; 0 when none."""
        async with self._reading() as connection:
            return await audit_chain.last_seq(connection)

    async def audit_anchors(self) -> dict[int, bytes]:
        """The chain heads restored from snapshots: seq → hash."""
        async with self._reading() as connection:
            return await audit_chain.anchors(connection)

    # -- join tokens ---------------------------------------------------------------

    async def add_join_token(
        self,
        *,
        token_id: str,
        secret_sha256: str,
        created_at: datetime,
        expires_at: datetime,
        created_by: str,
    ) -> None:
        """Store a new join token by the SHA-256 hex digest of its secret.

        Raises:
            ValueError: ``secret_sha256`` is not a SHA-256 hex digest, or the token
                expires before it is created.
            TokenExistsError: a token with this id is already stored.
        """
        async with self._writing() as connection:
            await join_tokens.insert(
                connection,
                token_id=token_id,
                secret_sha256=secret_sha256,
                created_at=created_at,
                expires_at=expires_at,
                created_by=created_by,
            )

    async def consume_join_token(
        self, *, token_id: str, secret_sha256: str, now: datetime, used_by: str
    ) -> JoinTokenRecord:
        """Use a join token once, atomically: of concurrent consumers exactly one wins.

        Raises:
            TokenUnknownError: no such token, or the secret does not match (one error,
                so a caller cannot tell which).
            TokenUsedError: the token was already used.
            TokenExpiredError: the token has expired.
        """
        async with self._writing() as connection:
            return await join_tokens.consume(
                connection,
                token_id=token_id,
                secret_sha256=secret_sha256,
                now=now,
                used_by=used_by,
            )

    # -- raft ------------------------------------------------------------------------

    async def load_raft(self) -> RaftDurableState:
        """What Raft saved before the last stop: term, vote, snapshot and later entries."""
        async with self._reading() as connection:
            return await raft.load(connection)

    async def save_raft(
        self,
        *,
        hard_state: tuple[int, str | None] | None = None,
        snapshot: RaftSnapshotRecord | None = None,
        truncate_from: int | None = None,
        entries: Sequence[RaftEntryRecord] = (),
        rejoined: bool = False,
    ) -> None:
        """Make one batch of Raft's output durable in one fsynced transaction.

        Order inside the transaction follows Raft's: a received snapshot replaces the
        log it covers, a conflicting suffix goes, then new entries are appended.
        ``rejoined``: a node restored from a backup has caught up, and votes again
        (:attr:`RaftDurableState.rejoining` is cleared). Raft sends the messages of
        the batch only after this returns.
        """
        async with self._writing() as connection:
            if hard_state is not None:
                await raft.save_hard_state(connection, *hard_state)
            if snapshot is not None:
                await raft.save_snapshot(connection, snapshot)
            if truncate_from is not None:
                await raft.truncate_log(connection, truncate_from)
            if entries:
                await raft.append_entries(connection, entries)
            if rejoined:
                await raft.end_rejoining(connection)

    async def forget_raft(self, *, reason: str) -> None:
        """Drop term, vote, log and snapshot, in one transaction, and mark the node
        as rejoining (:attr:`RaftDurableState.rejoining`): a restore's answer to a
        Raft state that may be older than what the node acknowledged before."""
        async with self._writing() as connection:
            await raft.forget(connection, reason=reason)

    async def raft_voters(self) -> tuple[str, ...]:
        """The voter set in force in the stored log (sorted names; empty if none)."""
        async with self._reading() as connection:
            return await raft.voters_in_force(connection)
