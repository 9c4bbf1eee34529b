"""The node's local SQLite store: datasets, runs, events, audit log, join tokens, Raft
and the archive of jobs the replicated queue forgot.

Every node keeps its own file; nothing outside this package writes SQL. Open it with
``await Store.open(path)``.
"""

from murmur.storage.errors import (
    BackupCorruptError,
    BackupError,
    DatasetExistsError,
    JoinTokenError,
    RecordNotFoundError,
    StoreClosedError,
    StoreCorruptError,
    StoreError,
    StoreOpenError,
    StoreVersionError,
    TokenExistsError,
    TokenExpiredError,
    TokenUnknownError,
    TokenUsedError,
)
from murmur.storage.records import (
    TERMINAL_JOB_STATES,
    TERMINAL_RUN_STATES,
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
from murmur.storage.store import EventDraft, Store

__all__ = [
    "TERMINAL_JOB_STATES",
    "TERMINAL_RUN_STATES",
    "ArchivedJobRecord",
    "AuditEntry",
    "AuditRecord",
    "BackupCorruptError",
    "BackupError",
    "ChainedAuditRecord",
    "DatasetExistsError",
    "DatasetRecord",
    "EventDraft",
    "EventRecord",
    "JobRecord",
    "JoinTokenError",
    "JoinTokenRecord",
    "RaftDurableState",
    "RaftEntryRecord",
    "RaftSnapshotRecord",
    "RecordNotFoundError",
    "RevocationRecord",
    "RunRecord",
    "Store",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreError",
    "StoreOpenError",
    "StoreVersionError",
    "TokenExistsError",
    "TokenExpiredError",
    "TokenUnknownError",
    "TokenUsedError",
]
