"""The audit trail's hash chain: an entry's canonical bytes, its hash, and the check.

Every voter appends the audited calls the control log carries (``RecordAudit``) to
one chain, at apply time: entry *n*'s hash is

    SHA-256(hash of entry n-1 || canonical_bytes(entry n))

with ``GENESIS_HASH`` (32 zero bytes) before entry 1. The canonical bytes are a
format tag followed by every field, each as a 4-byte big-endian length and its
UTF-8 bytes (integers in decimal), in a fixed order; the sequence number is one
of them, so an entry cannot move. Voters apply the same entries in the same order,
so every voter computes the same chain; an edited, removed or reordered entry
changes a hash that every later one depends on.

A voter restored from a snapshot holds no entries before it: the snapshot carries
the chain's head (count and hash), and the node keeps it as an *anchor*, from which
the entries after it are checked (``ChainCheck``).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

CHAIN_FORMAT_TAG = b"murmur.audit.v1\x00"
GENESIS_HASH = bytes(32)
"""The "previous hash" of entry 1."""


@dataclass(frozen=True, slots=True)
class AuditCall:
    """One audited call, as the node the client reached recorded it.

    Attributes:
        origin_id: its id in that node's outbox (the local ``audit`` table).
        time_us: that node's clock when the call ended, microseconds since the epoch.
        result: ``"OK"`` or the status code's name.
    """

    origin_id: int
    node: str
    time_us: int
    user: str
    role: str
    action: str
    target: str
    result: str
    detail: str


@dataclass(frozen=True, slots=True)
class ChainedAudit:
    """An entry of the chain: the call, its place (``seq``, from 1) and its hash."""

    seq: int
    origin: str
    call: AuditCall
    hash: bytes


def canonical_bytes(seq: int, origin: str, call: AuditCall) -> bytes:
    """The bytes an entry's hash covers (everything shown of it, and its place)."""
    fields = (
        str(seq),
        origin,
        str(call.origin_id),
        call.node,
        str(call.time_us),
        call.user,
        call.role,
        call.action,
        call.target,
        call.result,
        call.detail,
    )
    out = bytearray(CHAIN_FORMAT_TAG)
    for value in fields:
        # surrogatepass: a string read back from a tampered file still encodes.
        data = value.encode("utf-8", "surrogatepass")
        out += len(data).to_bytes(4, "big")
        out += data
    return bytes(out)


def link_hash(previous: bytes, seq: int, origin: str, call: AuditCall) -> bytes:
    """Entry ``seq``'s hash, after an entry whose hash is ``previous``."""
    return hashlib.sha256(previous + canonical_bytes(seq, origin, call)).digest()


def extend(head: bytes, count: int, origin: str, calls: Iterable[AuditCall]) -> list[ChainedAudit]:
    """``calls`` appended after a chain of ``count`` entries ending in ``head``."""
    chained: list[ChainedAudit] = []
    previous = head if count else GENESIS_HASH
    for offset, call in enumerate(calls, start=1):
        seq = count + offset
        previous = link_hash(previous, seq, origin, call)
        chained.append(ChainedAudit(seq, origin, call, previous))
    return chained


@dataclass(frozen=True, slots=True)
class ChainReport:
    """What ``ChainCheck`` found.

    Attributes:
        entries: entries checked (up to the first bad one).
        first_id: the first entry held (1, or the one after an anchor); 0 if none.
        last_id: the last good entry; 0 if none.
        head: the last good entry's hash (``GENESIS_HASH`` when none).
        bad_id: the first entry that does not check (0 when intact); for entries
            removed, the first one missing.
        problem: one line saying what is wrong; empty when intact.
    """

    intact: bool
    entries: int
    first_id: int
    last_id: int
    head: bytes
    bad_id: int = 0
    problem: str = ""


class ChainCheck:
    """Checks a chain fed in sequence order, page by page.

    Args:
        anchors: sequence number → hash of the chain heads this node restored from
            snapshots: entries at or below one need not be held.
        log_count: the chain's length as this node's control state has it (0: unknown).
        log_head: its head hash: the held entry ``log_count`` must have it, so a
            consistent rewrite of the stored copy, or its end cut off, is found too.
    """

    def __init__(self, anchors: Mapping[int, bytes], log_count: int, log_head: bytes) -> None:
        self._anchors = dict(anchors)
        self._log_count = log_count
        self._log_head = log_head
        self._next = 1
        self._previous = GENESIS_HASH
        self._first = 0
        self._entries = 0
        self._bad_id = 0
        self._problem = ""

    @property
    def broken(self) -> bool:
        return bool(self._problem)

    def feed(self, entries: Iterable[ChainedAudit]) -> None:
        """Check the next entries (in the order stored: by sequence number)."""
        for entry in entries:
            if self._problem:
                return
            self._feed_one(entry)

    def _fail(self, bad_id: int, problem: str) -> None:
        self._bad_id, self._problem = bad_id, problem

    def _feed_one(self, entry: ChainedAudit) -> None:
        if entry.seq < self._next:
            self._fail(entry.seq, f"entry {entry.seq} is out of order (after {self._next - 1})")
            return
        if entry.seq > self._next:
            anchored = self._anchors.get(entry.seq - 1)
            if anchored is None:
                missing = f"{self._next}" if entry.seq == self._next + 1 else (
                    f"{self._next}..{entry.seq - 1}"
                )  # fmt: skip
                self._fail(self._next, f"entries {missing} are missing before entry {entry.seq}")
                return
            self._previous = anchored
        expected = link_hash(self._previous, entry.seq, entry.origin, entry.call)
        if expected != entry.hash:
            self._fail(
                entry.seq,
                f"entry {entry.seq} does not match its hash "
                "(it was edited, or an entry before it was replaced)",
            )
            return
        if entry.seq == self._log_count and entry.hash != self._log_head:
            self._fail(
                entry.seq, f"entry {entry.seq} is not the head the control log holds (rewritten)"
            )
            return
        if not self._first:
            self._first = entry.seq
        self._entries += 1
        self._previous = entry.hash
        self._next = entry.seq + 1

    def finish(self) -> ChainReport:
        """The verdict, once every stored entry was fed."""
        last = self._next - 1
        anchored_end = self._anchors.get(self._log_count) == self._log_head
        if not self._problem and self._log_count > last and not anchored_end:
            first_missing = last + 1
            span = (
                f"entry {first_missing} is"
                if first_missing == self._log_count
                else f"entries {first_missing}..{self._log_count} are"
            )
            self._fail(first_missing, f"{span} missing (the control log holds {self._log_count})")
        if self._problem:
            return ChainReport(
                intact=False,
                entries=self._entries,
                first_id=self._first,
                last_id=last if self._entries else 0,
                head=self._previous,
                bad_id=self._bad_id,
                problem=self._problem,
            )
        return ChainReport(
            intact=True,
            entries=self._entries,
            first_id=self._first,
            last_id=last,
            head=self._previous,
        )


def verify(
    entries: Iterable[ChainedAudit],
    *,
    anchors: Mapping[int, bytes] | None = None,
    log_count: int = 0,
    log_head: bytes = GENESIS_HASH,
) -> ChainReport:
    """Check a whole chain at once (see :class:`ChainCheck`)."""
    check = ChainCheck(anchors or {}, log_count, log_head)
    check.feed(entries)
    return check.finish()
