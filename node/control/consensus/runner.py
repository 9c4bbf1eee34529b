"""`ConsensusRunner`: the daemon's side of Raft. It drives the pure machine
(node/control/raft) with the monotonic clock, makes its output durable in the node's
SQLite store before any message leaves, carries messages on one
``NodeService.RaftStream`` per peer (mTLS; node/control/consensus/streams.py), and applies
committed entries to the replicated state machine.

One loop owns the machine. Inputs (messages from peers, proposals) wait in an
inbox; each turn feeds all of them, ticks, and handles the one ``Ready`` they
produced: persist (one fsynced transaction: term, vote, snapshot, truncation,
entries), then send, then apply. A burst of proposals or messages therefore costs
one transaction and one round of messages, not one each: that is where
throughput comes from.

A proposal is answered only once its entry is committed and applied (a quorum of
voters has it on disk): the caller then gets the state machine's result. An entry
that lost its place (a new leader's log replaced it) fails the proposal with
:class:`NotLeaderError`; one that is neither committed nor lost within
``PROPOSAL_TIMEOUT_SECONDS`` fails with :class:`ProposalTimeoutError`. In both cases
the caller does not know whether the command took effect; commands are written so
that a retry is harmless (an idempotency key for submissions).

A bug met applying an entry cannot stop this node's Raft: a state machine that
raises on a committed command, or an ``on_applied`` that raises on its result, is
logged with its traceback and counted (:meth:`ConsensusRunner.stats`, with the
sender's counts), and the loop goes on. Such a bug is met alike by every voter of
the version, so the entry counts as applied everywhere.

An entry a *newer version* wrote is another matter: an older voter that skipped it
would hold a state apart from the others' for good. The state machine says so with
:class:`UpgradeRequiredError`, and the runner fails stop (:attr:`ConsensusRunner.halted`):
it applies nothing from that entry on, fails the proposals waiting on later entries,
and withholds its candidacy (a leader acts on its state); Raft goes on storing and
acknowledging entries and granting votes, which need only the log, so the node
still helps commit and elect. Restarted on a version that knows the entry, it
applies the log from its snapshot on. A snapshot it cannot restore (a newer format)
halts it the same way, at start or when a leader sends one.

Proposals pass :attr:`ConsensusRunner.admit` first (the control protocol's gating,
node/control/queue/protocol_gate.py): it may refuse one, or put entries before it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from murmur.node.control.consensus.errors import (
    NotLeaderError,
    ProposalTimeoutError,
    UpgradeRequiredError,
)
from murmur.node.control.consensus.streams import RaftSender, RaftSendStats
from murmur.node.control.consensus.wire import (
    entries_from_records,
    entry_to_record,
    from_wire,
    sender_of,
    snapshot_from_record,
    snapshot_to_record,
    to_wire,
)
from murmur.node.control.raft import (
    ElectionConfig,
    ElectionError,
    EntryKind,
    LogEntry,
    LogPosition,
    Message,
    Outgoing,
    PersistentState,
    Raft,
    Ready,
    Role,
    Snapshot,
    bootstrap_entry,
)
from murmur.node.control.raft.errors import NotLeaderError as ElectionNotLeaderError
from murmur.node.errors import NodeError
from murmur.node.membership.transport import SendOutcome
from murmur.storage import Store
from murmur.v1 import node_pb2

if TYPE_CHECKING:
    from murmur.v1.node_pb2_grpc import NodeServiceAsyncStub

_log = logging.getLogger("murmur.consensus")

PROPOSAL_TIMEOUT_SECONDS = 5.0
"""How long a proposal waits to be committed. Failover takes about a second, so
this covers one; past it the leader is cut off from its voters and the client is
better told so than kept waiting."""

ADDRESS_CACHE_SECONDS = 1.0
"""How long a peer's address, once looked up, serves its messages: a look-up reads
gossip's whole view of the member, and a leader sends every follower a message per
heartbeat. A node restarted on another address misses at most this much (Raft
resends)."""


class StateMachine(Protocol):
    """What the log's COMMAND entries are applied to (node/control's ControlState)."""

    def apply(self, term: int, index: int, data: bytes) -> object:
        """Apply one committed command; the result goes to whoever proposed it.
        Raises :class:`UpgradeRequiredError`, having changed nothing, for an entry
        only a newer version can apply."""

    def snapshot_encoder(self) -> Callable[[], bytes]:
        """Takes the whole state as it is now; the function returned encodes it, for
        compaction (run in a worker thread: the event loop goes on meanwhile)."""

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's. Raises
        :class:`UpgradeRequiredError`, having changed nothing, for a snapshot only a
        newer version can restore."""


class RaftTransport(Protocol):
    """The peer channels (:class:`~murmur.node.membership.transport.PeerTransport`)."""

    async def call(
        self, address: str, invoke: Callable[[NodeServiceAsyncStub], Awaitable[object]]
    ) -> SendOutcome: ...


@dataclass(frozen=True, slots=True)
class ConsensusStatus:
    """This node's view of the election, for status displays and gossip. ``leader``
    is always the leader of ``term`` (Raft forgets it when the term moves on), never
    one of an earlier term."""

    name: str
    """This node's name (whether it is among ``voters`` tells a voter's view)."""
    role: Role
    term: int
    leader: str | None
    voters: frozenset[str]
    commit_index: int
    last_index: int
    learners: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ConsensusStats:
    """Counters since the runner was made, for logs, status and tests."""

    apply_failures: int
    """Committed commands the state machine raised on (a bug): each logged with its
    traceback; the entry counts as applied and its proposer got the error."""
    on_applied_failures: int
    """Applied entries whose ``on_applied`` raised (a bug where results are heard
    of): each logged with its traceback; Raft went on."""
    sends: RaftSendStats
    """What became of the messages sent to peers."""


def _read_outcome(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


@dataclass(slots=True)
class _Pending:
    """A proposal waiting for its entry to be applied (or lost, or late)."""

    position: LogPosition
    deadline: float
    """Monotonic time after which the run loop fails it with ProposalTimeoutError."""
    future: asyncio.Future[object] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ConsensusRunner:
    """Runs Raft for this node.

    Args:
        name: this node's name (its Raft id).
        advertise_address: where peers reach this node's API (answers come here).
        store: the node's store (``load_raft``/``save_raft``).
        transport: the shared peer channels.
        address_of: a peer's API address by name, from gossip (``None``: unknown).
        state_machine: where committed commands go.
        config: Raft timings.
        bootstrap: this node founded the cluster; with an empty log it writes the
            entry that makes it the lone voter. Every other node starts with no
            voters and waits for a leader to replicate to it.
        on_change: called (no arguments) when role, term, leader or voters change.
        on_applied: called with the state machine's result of every applied command
            (on every node that applies it), e.g. to tell watchers what changed.
        snapshot_every: compact the log once this many entries were applied since
            the last snapshot: a restart replays at most this many, and a lagging
            voter gets the snapshot instead of an unbounded log.
    """

    def __init__(
        self,
        *,
        name: str,
        advertise_address: str,
        store: Store,
        transport: RaftTransport,
        address_of: Callable[[str], str | None],
        state_machine: StateMachine,
        config: ElectionConfig,
        bootstrap: bool,
        on_change: Callable[[], None] = lambda: None,
        on_applied: Callable[[object], None] = lambda result: None,
        snapshot_every: int = 10_000,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self._address = advertise_address
        self._store = store
        self._address_of = address_of
        self._state_machine = state_machine
        self._config = config
        self._bootstrap = bootstrap
        self._on_change = on_change
        self.on_applied = on_applied
        """Called with every applied command's result (settable after construction:
        what consumes results may need this runner first)."""
        self._applied_signal = asyncio.Event()
        self._rng = rng or random.Random()
        self._raft: Raft | None = None
        self._inbox: list[Message] = []
        self._wake = asyncio.Event()
        self._pending: dict[int, _Pending] = {}
        self._learned_addresses: dict[str, str] = {}
        self._addresses: dict[str, tuple[str, float]] = {}
        """Peer name → (address, monotonic time until which it is used unchecked)."""
        self._sender = RaftSender(transport)
        self._applied = LogPosition()
        self._applied_voters: frozenset[str] = frozenset()
        self._snapshot_index = 0
        self._snapshot_every = snapshot_every
        self._last_seen: tuple[Role, int, str | None, frozenset[str]] | None = None
        self._apply_failures = 0
        self._on_applied_failures = 0
        self._halted = ""
        self.admit: Callable[[bytes], Sequence[bytes]] = lambda data: ()
        """Called with every command before it is proposed here (the leader's, and
        forwarded ones); returns entries to append before it (in order), or raises a
        NodeError that refuses it. Settable after construction, like ``on_applied``."""

    # --- reading ------------------------------------------------------------------

    @property
    def raft(self) -> Raft:
        if self._raft is None:
            raise RuntimeError("consensus runner used before start()")
        return self._raft

    def status(self) -> ConsensusStatus:
        raft = self.raft
        return ConsensusStatus(
            name=self.name,
            role=raft.role,
            term=raft.term,
            leader=raft.leader,
            voters=raft.voters,
            commit_index=raft.commit_index,
            last_index=raft.last_log.index,
            learners=raft.learners if raft.is_leader else frozenset(),
        )

    def stats(self) -> ConsensusStats:
        """A snapshot of the counters."""
        return ConsensusStats(
            apply_failures=self._apply_failures,
            on_applied_failures=self._on_applied_failures,
            sends=self._sender.stats,
        )

    def election_facts(self) -> ConsensusStatus | None:
        """:meth:`status` for this node's NodeInfo and cluster view; ``None`` before
        :meth:`start`."""
        return None if self._raft is None else self.status()

    @property
    def is_voter(self) -> bool:
        """Whether this node votes and applies every committed entry, so that its own
        state may answer reads. A node restored from a backup does not until it has
        caught up (``rejoining``); a halted one (:attr:`halted`) has stopped applying."""
        raft = self._raft
        return (
            raft is not None
            and not raft.rejoining
            and not self._halted
            and self.name in raft.voters
        )

    @property
    def halted(self) -> str:
        """Why this node stopped applying the log (it must be upgraded), or ""."""
        return self._halted

    @property
    def is_leader(self) -> bool:
        return self._raft is not None and self._raft.is_leader

    @property
    def applied_index(self) -> int:
        return self._applied.index

    def state_is_current(self) -> bool:
        """Whether this node leads and has applied every entry of earlier terms (its
        term's first entry is applied): only then may it act on the replicated state,
        e.g. schedule, since a new leader's state is incomplete until then."""
        return self.is_leader and not self._halted and self._applied.term == self.raft.term

    def applied_signal(self) -> asyncio.Event:
        """An event set the next time entries are applied (or leadership changes)."""
        return self._applied_signal

    def _signal_applied(self) -> None:
        signal, self._applied_signal = self._applied_signal, asyncio.Event()
        signal.set()

    def leader_address(self) -> str | None:
        """Where the leader this node knows of listens (``None``: no leader known)."""
        leader = self.raft.leader
        if leader is None:
            return None
        if leader == self.name:
            return self._address
        return self._peer_address(leader)

    # --- life ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load what Raft saved and build the machine; founders bootstrap once."""
        durable = await self._store.load_raft()
        snapshot = snapshot_from_record(durable.snapshot) if durable.snapshot else None
        entries = entries_from_records(durable.entries)
        # A node restored from a backup (its Raft state dropped) never founds a
        # cluster again, not even the CA node: it waits for the leader.
        if self._bootstrap and not durable.rejoining and snapshot is None and not entries:
            entry = bootstrap_entry(self.name)
            await self._store.save_raft(entries=[entry_to_record(entry)])
            entries = [entry]
        halt = ""
        if snapshot is not None:
            try:
                self._state_machine.restore(snapshot.data)
            except UpgradeRequiredError as exc:
                halt = f"its snapshot (up to entry {snapshot.last.index}): {exc}"
            else:
                self._applied = snapshot.last
                self._applied_voters = snapshot.voters
            self._snapshot_index = snapshot.last.index
        self._raft = Raft(
            self.name,
            config=self._config,
            rng=self._rng,
            now=time.monotonic(),
            hard_state=PersistentState(durable.term, durable.voted_for),
            snapshot=snapshot,
            entries=entries,
            rejoining=durable.rejoining,
        )
        _log.info(
            "raft loaded",
            extra={
                "event": "consensus.loaded",
                "term": durable.term,
                "entries": len(entries),
                "snapshot_index": self._snapshot_index,
                "voters": sorted(self._raft.voters),
                "rejoining": durable.rejoining,
            },
        )
        if halt:
            self._halt(halt)
        if durable.rejoining:
            _log.warning(
                "restored from a backup: this node takes no part in elections until a "
                "leader has brought it up to date (if it was its cluster's only voter, "
                "restore it again with `--raft keep`)",
                extra={"event": "consensus.rejoining"},
            )

    async def run(self) -> None:
        """Drive the machine until cancelled."""
        raft = self.raft
        loop = asyncio.get_running_loop()
        try:
            while True:
                delay = min(raft.next_deadline(), self._next_expiry()) - time.monotonic()
                if delay > 0 and not self._inbox:
                    # A timer that sets the event: no task, no cancellation per turn.
                    timer = loop.call_later(min(delay, 1.0), self._wake.set)
                    try:
                        await self._wake.wait()
                    finally:
                        timer.cancel()
                self._wake.clear()
                now = time.monotonic()
                inbox, self._inbox = self._inbox, []
                for message in inbox:
                    raft.receive(message, now)
                raft.tick(now)
                await self._handle(raft.ready())
                self._expire_pending(time.monotonic())
        finally:
            self._fail_pending(NotLeaderError(None, "this node is stopping"))
            await self._sender.close()

    # --- inputs -------------------------------------------------------------------

    def receive(self, request: node_pb2.RaftRequest) -> None:
        """A message from a peer (``NodeService.RaftStream`` or ``Raft``); handled on
        the next turn.

        Raises:
            WireError: the request cannot be decoded.
        """
        message = from_wire(request)
        if request.from_address:
            self._learned_addresses[sender_of(message)] = request.from_address
        self._inbox.append(message)
        self._wake.set()

    async def propose(self, data: bytes) -> object:
        """Append a command; returns the state machine's result once it is applied.

        Raises:
            NotLeaderError: this node does not lead (the error names the leader if
                known), or lost leadership before the entry committed.
            ProposalTimeoutError: not committed within ``PROPOSAL_TIMEOUT_SECONDS``.
        """
        # No wait_for: the run loop fails the proposal at its deadline, which costs
        # nothing per call. A cancelled caller cancels the future; applying skips it.
        return await self._append_pending(data).future

    async def propose_all(self, commands: Sequence[bytes]) -> list[object]:
        """Append several commands at once (a forwarded batch); returns, in order,
        each one's result, or the exception :meth:`propose` would have raised."""
        outcomes: list[object] = []
        waiting: list[asyncio.Future[object]] = []
        for data in commands:
            try:
                pending = self._append_pending(data)
            except NodeError as exc:  # not the leader, or refused by ``admit``
                outcomes.append(exc)
            else:
                outcomes.append(pending.future)
                waiting.append(pending.future)
        if waiting:
            await asyncio.wait(waiting)
        return [
            (outcome.exception() or outcome.result())
            if isinstance(outcome, asyncio.Future)
            else outcome
            for outcome in outcomes
        ]

    def _append_pending(self, data: bytes) -> _Pending:
        raft = self.raft
        if not raft.is_leader:
            raise NotLeaderError(raft.leader, f"{self.name} is not the leader")
        before = self.admit(data)
        now = time.monotonic()
        try:
            for entry in before:
                raft.propose(entry, now)  # nobody waits for its result
            position = raft.propose(data, now)
        except ElectionNotLeaderError as exc:  # leads, but may not take entries now
            raise NotLeaderError(raft.leader, f"{self.name} cannot take entries: {exc}") from None
        pending = _Pending(position, now + PROPOSAL_TIMEOUT_SECONDS)
        # Its caller may be gone (a forwarded batch whose call was cancelled): an
        # outcome nobody reads is read here, not reported by asyncio as lost.
        pending.future.add_done_callback(_read_outcome)
        self._pending[position.index] = pending
        self._wake.set()
        return pending

    def _next_expiry(self) -> float:
        """The oldest proposal's deadline (they were made in deadline order)."""
        for pending in self._pending.values():
            return pending.deadline
        return math.inf

    def _expire_pending(self, now: float) -> None:
        """Fail the proposals whose deadline passed before their entry applied."""
        expired = []
        for index, pending in self._pending.items():
            if pending.deadline > now:
                break
            expired.append(index)
        for index in expired:
            future = self._pending.pop(index).future
            if not future.done():
                future.set_exception(
                    ProposalTimeoutError(
                        f"not committed within {PROPOSAL_TIMEOUT_SECONDS:g} s "
                        "(the leader cannot reach a quorum of voters)"
                    )
                )

    def change_voters(self, voters: frozenset[str]) -> None:
        """Leader: propose a new voter set (one added or removed); see Raft."""
        self.raft.change_voters(voters, time.monotonic())
        self._wake.set()

    def forget_voter(self, name: str) -> bool:
        """An admin removed ``name`` (``node remove``): the leader takes it out of the
        voters at once when Raft allows; otherwise the voter manager does, once the
        node has been gone for the stabilization time. Returns whether it was done."""
        raft = self._raft
        if raft is None or not raft.is_leader or name == self.name or name not in raft.voters:
            return False
        try:
            self.change_voters(raft.voters - {name})
        except ElectionError as exc:
            _log.info("voter %s not removed yet: %s", name, exc)
            return False
        return True

    def add_learner(self, name: str) -> None:
        self.raft.add_learner(name)
        self._wake.set()

    def remove_learner(self, name: str) -> None:
        self.raft.remove_learner(name)
        self._wake.set()

    # --- one turn -----------------------------------------------------------------

    async def _handle(self, ready: Ready) -> None:
        if ready.empty:
            self._note_status()
            return
        if (
            ready.hard_state is not None
            or ready.snapshot is not None
            or ready.truncate_from is not None
            or ready.entries
            or ready.rejoined
        ):
            hard = ready.hard_state
            await self._store.save_raft(
                hard_state=(hard.term, hard.voted_for) if hard is not None else None,
                snapshot=snapshot_to_record(ready.snapshot) if ready.snapshot else None,
                truncate_from=ready.truncate_from,
                entries=[entry_to_record(entry) for entry in ready.entries],
                rejoined=ready.rejoined,
            )
        if ready.rejoined:
            _log.info(
                "caught up with the leader after a restore: this node votes again",
                extra={"event": "consensus.rejoined", "commit_index": self.raft.commit_index},
            )
        if ready.snapshot is not None:
            self._restore(ready.snapshot)
            _log.info(
                "raft snapshot installed",
                extra={"event": "consensus.snapshot_installed", "index": ready.snapshot.last.index},
            )
        self._send(ready.messages)
        self._apply(ready.committed)
        if ready.committed or ready.snapshot is not None:
            self._signal_applied()
        self._note_status()
        if self._applied.index - self._snapshot_index >= self._snapshot_every:
            await self._compact()

    def _restore(self, snapshot: Snapshot) -> None:
        try:
            self._state_machine.restore(snapshot.data)
        except UpgradeRequiredError as exc:
            # The state stays what it was; Raft holds the snapshot, for the version
            # that reads it (after the upgrade, from the store).
            self._halt(f"the snapshot a leader sent (up to entry {snapshot.last.index}): {exc}")
        else:
            if self._halted:
                # A whole state that this version reads: it applies from there on.
                self._halted = ""
                self.raft.set_candidacy(True, time.monotonic())
                _log.warning(
                    "a snapshot replaced the state this node could not apply: it applies "
                    "the log again",
                    extra={"event": "consensus.resumed", "index": snapshot.last.index},
                )
            self._applied = snapshot.last
            self._applied_voters = snapshot.voters
        self._snapshot_index = snapshot.last.index
        for index in [i for i in self._pending if i <= snapshot.last.index]:
            pending = self._pending.pop(index)
            if not pending.future.done():
                pending.future.set_exception(
                    NotLeaderError(self.raft.leader, "replaced by a snapshot from another leader")
                )

    def _apply(self, committed: Iterable[LogEntry]) -> None:
        for entry in committed:
            if self._halted:
                self._skip(entry)
                continue
            result: object = None
            failure: Exception | None = None
            if entry.kind is EntryKind.COMMAND:
                try:
                    result = self._state_machine.apply(entry.term, entry.index, entry.data)
                except UpgradeRequiredError as exc:
                    self._halt(f"entry {entry.index}: {exc}")
                    self._skip(entry)
                    continue
                except Exception as exc:
                    failure = exc
                    self._note_apply_failure(entry, exc)
                else:
                    self._tell_applied(entry, result)
            elif entry.kind is EntryKind.VOTERS:
                self._applied_voters = entry.voters
            self._applied = entry.position
            pending = self._pending.pop(entry.index, None)
            if pending is None or pending.future.done():
                continue
            if pending.position.term == entry.term:
                if failure is None:
                    pending.future.set_result(result)
                else:
                    pending.future.set_exception(failure)
            else:
                pending.future.set_exception(
                    NotLeaderError(
                        self.raft.leader, "leadership changed before the entry committed"
                    )
                )

    def _halt(self, reason: str) -> None:
        """Stop applying the log (see the module doc): loudly, once."""
        self._halted = reason
        self.raft.set_candidacy(False, time.monotonic())
        _log.error(
            "this node stopped applying the control log at %s; it takes part in Raft but "
            "never leads, and runs its jobs as before: upgrade it to the version the other "
            "nodes run (it then applies the log from where it stopped)",
            reason,
            extra={"event": "consensus.halted", "reason": reason},
        )
        self._on_change()

    def _skip(self, entry: LogEntry) -> None:
        """A committed entry a halted node does not apply: whoever waits on it here
        learns that this node cannot tell its result."""
        pending = self._pending.pop(entry.index, None)
        if pending is not None and not pending.future.done():
            pending.future.set_exception(
                NotLeaderError(None, f"{self.name} cannot apply the control log: {self._halted}")
            )

    def _note_apply_failure(self, entry: LogEntry, error: Exception) -> None:
        # The state machine is to answer what it cannot apply with a value; one that
        # raises has a bug. Every voter meets it at the same entry: the log goes on
        # (the entry counts as applied), and the proposer gets the error.
        self._apply_failures += 1
        _log.error(
            "entry %d could not be applied",
            entry.index,
            exc_info=error,
            extra={
                "event": "consensus.apply_failed",
                "index": entry.index,
                "failures": self._apply_failures,
            },
        )

    def _tell_applied(self, entry: LogEntry, result: object) -> None:
        try:
            self.on_applied(result)
        except Exception:
            # A bug in what hears of results must not stop this node's Raft (nor make
            # it skip the entry: the state machine has applied it).
            self._on_applied_failures += 1
            _log.exception(
                "on_applied failed for entry %d",
                entry.index,
                extra={
                    "event": "consensus.on_applied_failed",
                    "index": entry.index,
                    "failures": self._on_applied_failures,
                },
            )

    async def _compact(self) -> None:
        # Encoding a state of 10,000 jobs takes ~0.5 s: the rest of the daemon serves
        # requests meanwhile; Raft waits, as it does for any write of its own.
        encode = self._state_machine.snapshot_encoder()
        position, voters = self._applied, self._applied_voters
        snapshot = Snapshot(position, voters, await asyncio.to_thread(encode))
        await self._store.save_raft(snapshot=snapshot_to_record(snapshot))
        self.raft.compact(snapshot)
        self._snapshot_index = snapshot.last.index
        _log.info(
            "raft log compacted",
            extra={"event": "consensus.compacted", "index": snapshot.last.index},
        )

    def _fail_pending(self, error: Exception) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(error)
        self._pending.clear()

    def _note_status(self) -> None:
        """Tell ``on_change`` (and the log, unless only the role moved) what changed."""
        raft = self.raft
        seen = (raft.role, raft.term, raft.leader, raft.voters)
        if seen == self._last_seen:
            return
        previous, self._last_seen = self._last_seen, seen
        if previous is None or previous[1:] != seen[1:]:
            _log.info(
                "raft state",
                extra={
                    "event": "consensus.state",
                    "role": raft.role.value,
                    "term": raft.term,
                    "leader": raft.leader or "",
                    "voters": sorted(raft.voters),
                },
            )
        self._on_change()
        self._signal_applied()

    # --- sending ------------------------------------------------------------------

    def _peer_address(self, name: str) -> str | None:
        now = time.monotonic()
        cached = self._addresses.get(name)
        if cached is not None and now < cached[1]:
            return cached[0]
        address = self._address_of(name) or self._learned_addresses.get(name)
        if address is None:
            self._addresses.pop(name, None)
        else:
            self._addresses[name] = (address, now + ADDRESS_CACHE_SECONDS)
        return address

    def _send(self, messages: Iterable[Outgoing]) -> None:
        for outgoing in messages:
            address = self._peer_address(outgoing.destination)
            if address is None:
                continue  # not known yet: gossip will tell; Raft resends
            # Best effort, in order per peer: a lost message is resent by Raft.
            self._sender.send(address, to_wire(outgoing.message, from_address=self._address))
