"""`RaftLog`: one node's copy of the replicated log, and what of it is not on disk yet.

The log is a snapshot (everything up to ``start``, compacted) followed by entries
``start.index + 1 .. last.index``. Besides the entries it tracks two things the
:class:`~murmur.node.control.raft.raft.Raft` machine needs at every step:

- the voter set in force: that of the last VOTERS entry, else the snapshot's (a
  VOTERS entry takes effect as soon as it is in the log, and truncating it
  reverts to the set before it);
- what the caller has not persisted yet, handed out by :meth:`take_unsaved`: a
  snapshot received from the leader, the index from which persisted entries are
  stale, and the entries appended since the last call.
"""

from __future__ import annotations

from collections.abc import Sequence

from murmur.node.control.raft.errors import ElectionSetupError
from murmur.node.control.raft.messages import EMPTY_LOG, EntryKind, LogEntry, LogPosition, Snapshot

ENTRY_OVERHEAD_BYTES = 24
"""What an entry costs on the wire besides its data and voter names (term, index,
kind), for ``ElectionConfig.max_bytes_per_message``."""


def entry_size(entry: LogEntry) -> int:
    return ENTRY_OVERHEAD_BYTES + len(entry.data) + sum(len(voter) for voter in entry.voters)


class RaftLog:
    """Snapshot plus entries, with the voter set and the unsaved tail.

    Raises:
        ElectionSetupError: ``entries`` do not start right after the snapshot, or
            have a gap.
    """

    def __init__(self, snapshot: Snapshot | None, entries: Sequence[LogEntry]) -> None:
        self._snapshot = snapshot
        self._start = snapshot.last if snapshot is not None else EMPTY_LOG
        self._entries = list(entries)
        for offset, entry in enumerate(self._entries):
            if entry.index != self._start.index + 1 + offset:
                raise ElectionSetupError(
                    f"raft: persisted entry {entry.index} should be "
                    f"{self._start.index + 1 + offset} (entries must follow the snapshot "
                    f"at index {self._start.index} without a gap)"
                )
        self._voter_changes = [e.index for e in self._entries if e.kind is EntryKind.VOTERS]
        self._unsaved_snapshot: Snapshot | None = None
        self._truncate_from: int | None = None
        self._unsaved_from = self.last_index + 1

    # --- reading ------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def start(self) -> LogPosition:
        """The position the snapshot ends at (0, 0 without one)."""
        return self._start

    @property
    def last_index(self) -> int:
        return self._start.index + len(self._entries)

    @property
    def last(self) -> LogPosition:
        return self._entries[-1].position if self._entries else self._start

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``; None if compacted away or beyond the end."""
        if index == self._start.index:
            return self._start.term
        offset = index - self._start.index - 1
        if 0 <= offset < len(self._entries):
            return self._entries[offset].term
        return None

    def position_at(self, index: int) -> LogPosition | None:
        term = self.term_at(index)
        return None if term is None else LogPosition(term, index)

    def between(self, first: int, last: int) -> list[LogEntry]:
        """Entries ``first .. last`` (both in the log, after the snapshot)."""
        base = self._start.index + 1
        return self._entries[first - base : last - base + 1]

    def batch(self, first: int, max_entries: int, max_bytes: int) -> tuple[LogEntry, ...]:
        """Entries from ``first`` on, up to the limits, and at least one."""
        offset = first - self._start.index - 1
        candidates = self._entries[offset : offset + max_entries]
        size = 0
        for count, entry in enumerate(candidates):
            size += entry_size(entry)
            if size > max_bytes and count > 0:
                return tuple(candidates[:count])
        return tuple(candidates)

    @property
    def voters(self) -> frozenset[str]:
        """The voter set in force: the last VOTERS entry's, else the snapshot's."""
        return self.voters_at(self.last_index)

    @property
    def voters_index(self) -> int:
        """Index of the last VOTERS entry after the snapshot (0 if none)."""
        return self._voter_changes[-1] if self._voter_changes else 0

    def voter_changes_after(self, index: int) -> list[int]:
        """Indexes of the VOTERS entries after ``index``."""
        return [change for change in self._voter_changes if change > index]

    def voters_at(self, index: int) -> frozenset[str]:
        """The voter set in force at ``index`` (at or after the snapshot)."""
        for change in reversed(self._voter_changes):
            if change <= index:
                return self._entries[change - self._start.index - 1].voters
        return self._snapshot.voters if self._snapshot is not None else frozenset()

    # --- changes ------------------------------------------------------------------

    def append(self, entry: LogEntry) -> None:
        self._entries.append(entry)
        if entry.kind is EntryKind.VOTERS:
            self._voter_changes.append(entry.index)

    def merge(self, entries: Sequence[LogEntry]) -> None:
        """Add a leader's ``entries`` (which follow an entry this log holds): skip
        those already held, truncate at the first conflict, append the rest."""
        for position, entry in enumerate(entries):
            held = self.term_at(entry.index)
            if held == entry.term:
                continue
            if held is not None:
                self.truncate(entry.index)
            for new in entries[position:]:
                self.append(new)
            return

    def truncate(self, first: int) -> None:
        """Drop the entries from ``first`` on."""
        del self._entries[first - self._start.index - 1 :]
        while self._voter_changes and self._voter_changes[-1] >= first:
            self._voter_changes.pop()
        if first < self._unsaved_from:
            # Entries from `first` on are on disk and now stale.
            self._truncate_from = (
                first if self._truncate_from is None else min(self._truncate_from, first)
            )
            self._unsaved_from = first

    def install(self, snapshot: Snapshot) -> None:
        """Take a leader's snapshot: keep the entries after it if the log holds its
        last entry, else drop the whole log."""
        last = snapshot.last
        if self.term_at(last.index) == last.term:
            del self._entries[: last.index - self._start.index]
        else:
            if self._unsaved_from > last.index + 1:  # stale persisted entries beyond it
                stale = last.index + 1
                self._truncate_from = (
                    stale if self._truncate_from is None else min(self._truncate_from, stale)
                )
            self._entries.clear()
            self._voter_changes.clear()
        self._snapshot = self._unsaved_snapshot = snapshot
        self._start = last
        self._unsaved_from = max(self._unsaved_from, last.index + 1)
        self._voter_changes = [change for change in self._voter_changes if change > last.index]

    def compact(self, snapshot: Snapshot) -> None:
        """Drop the entries the caller's own ``snapshot`` covers (it saved it)."""
        del self._entries[: snapshot.last.index - self._start.index]
        self._snapshot = snapshot
        self._start = snapshot.last
        self._voter_changes = [c for c in self._voter_changes if c > snapshot.last.index]

    def take_unsaved(self) -> tuple[Snapshot | None, int | None, tuple[LogEntry, ...]]:
        """What to persist since the last call: (snapshot, truncate_from, entries)."""
        base = self._start.index + 1
        entries = tuple(self._entries[max(0, self._unsaved_from - base) :])
        unsaved = (self._unsaved_snapshot, self._truncate_from, entries)
        self._unsaved_snapshot = None
        self._truncate_from = None
        self._unsaved_from = self.last_index + 1
        return unsaved
