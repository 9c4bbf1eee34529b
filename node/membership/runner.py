"""`MembershipRunner`: the gossip state machine, run in real time over a transport.

:class:`murmur.node.gossip.Membership` is pure: it is told the time and the messages and
returns messages to send. The runner is everything around it on a live node:

- one driver loop calls ``tick(now)`` on the monotonic clock when
  ``next_deadline()`` comes, and wakes early whenever something happened that may
  bring a deadline forward (a message arrived, a send was refused, a join or a
  leave), so no probe or timeout runs late because the loop was asleep;
- every :class:`~murmur.node.gossip.Outgoing` is encoded and sent as its own task, at most
  ``max_in_flight_sends`` at a time; beyond that a message is dropped (counted),
  as a full socket buffer drops a datagram: the loop never waits on a peer;
- a send the peer's host refused goes back to the machine as
  ``report_refused`` (the process is gone: fast crash detection); a timeout does
  not, since a stalled or distant peer is not a dead one;
- :meth:`receive` is what the ``NodeService.Gossip`` handler calls; bytes that do
  not decode are logged and dropped and nothing ever raises to the RPC;
- this node's metadata (a serialized NodeInfo, :mod:`murmur.node.membership.node_meta`)
  is read from ``meta_source`` at most every ``meta_refresh_interval`` and
  published when it changed;
- a watcher measures how late the event loop wakes from a sleep and reports it
  (Lifeguard: a node that cannot run on time should doubt itself, not its peers).

The runner owns its tasks: :meth:`run` holds them in a TaskGroup and cancelling
it cancels and awaits them all. It does not own the transport; whoever made the
transport closes it after :meth:`run` has returned.

Piggyback budget: one Alive update carries a whole metadata blob (up to
:data:`~murmur.node.membership.node_meta.MAX_META_BYTES`), and an update larger than the
config's ``max_piggyback_bytes`` would never be sent, so the runner refuses a config
below :data:`MIN_PIGGYBACK_BYTES`; use :data:`GRPC_PIGGYBACK_BYTES` (memberlist's
1400 bytes is a UDP datagram limit gRPC does not have).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from murmur.node.broadcast import Broadcaster
from murmur.node.gossip import (
    Alive,
    EventKind,
    GossipConfig,
    GossipDecodeError,
    Member,
    Membership,
    MembershipEvent,
    MemberState,
    Outgoing,
    decode,
    encode,
)
from murmur.node.gossip.codec import update_size
from murmur.node.membership.errors import (
    MemberNotDownError,
    MemberNotFoundError,
    MembershipConfigError,
    MembershipError,
)
from murmur.node.membership.node_meta import MAX_META_BYTES, decode_meta
from murmur.node.membership.transport import SendOutcome
from murmur.v1 import types_pb2

_log = logging.getLogger("murmur.membership")

URGENT_META_SPACING_SECONDS = 0.5
"""Shortest time between two reads of this node's facts that a change asked for
(``request_meta_refresh``); the regular reads stay ``meta_refresh_interval`` apart."""

MIN_PIGGYBACK_BYTES = MAX_META_BYTES + 512
"""Smallest ``max_piggyback_bytes`` that carries an Alive with a full metadata blob
(the name, address and counters take well under 512 bytes)."""

DEFAULT_SEND_TIMEOUT = 5.0
"""Deadline of one gossip send: about how long a datagram may wait in a busy
receiver's socket buffer before it is as good as lost."""

GRPC_PIGGYBACK_BYTES = 64 * 1024
"""Piggyback budget to use over gRPC: several full-metadata Alives per message."""

_MAX_ADDRESS_CHARS = 512
_JOIN_NOTE_FIRST = 5.0
_JOIN_NOTE_MAX = 300.0
_MIN_IDLE = 0.001
_DROP_LOG_INTERVAL = 60.0

_NODE_STATES: dict[MemberState, types_pb2.NodeState.ValueType] = {
    MemberState.ALIVE: types_pb2.NODE_STATE_ALIVE,
    MemberState.SUSPECT: types_pb2.NODE_STATE_SUSPECT,
    MemberState.DEAD: types_pb2.NODE_STATE_DEAD,
    MemberState.LEFT: types_pb2.NODE_STATE_LEFT,
}


def node_state(state: MemberState) -> types_pb2.NodeState.ValueType:
    """The contract's NodeState for a gossip member state."""
    return _NODE_STATES[state]


class GossipTransport(Protocol):
    """What the runner sends through (:class:`~murmur.node.membership.transport.PeerTransport`
    in the daemon)."""

    async def send(
        self,
        address: str,
        payload: bytes,
        *,
        from_address: str,
        timeout: float,  # noqa: ASYNC109 - the RPC's deadline, not a wait of ours
    ) -> SendOutcome: ...


@dataclass(frozen=True, slots=True)
class ClusterMember:
    """One member as gossip sees it, with its NodeInfo decoded.

    ``info`` is ``None`` until a usable blob arrived (or when the member's blob is
    not a NodeInfo naming it). Its ``state`` and ``incarnation`` are gossip's: a
    member gossip holds alive keeps the state it announced itself only when that is
    DRAINING. Each call hands out its own copy of ``info``.
    """

    member: Member
    info: types_pb2.NodeInfo | None

    @property
    def name(self) -> str:
        return self.member.name

    @property
    def address(self) -> str:
        return self.member.address

    @property
    def state(self) -> MemberState:
        return self.member.state


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """``kind`` happened to ``member`` at ``at`` (seconds on the monotonic clock)."""

    kind: EventKind
    member: ClusterMember
    at: float


@dataclass(slots=True)
class MembershipStats:
    """Counters since the runner was made, for logs, metrics and tests."""

    messages_sent: int = 0
    """Sends the peer's server accepted."""
    sends_refused: int = 0
    sends_timed_out: int = 0
    sends_failed: int = 0
    """Other failures: TLS refused, reset, an error status, a transport error."""
    sends_dropped: int = 0
    """Never attempted: too many in flight, or the runner was not running."""
    messages_received: int = 0
    messages_dropped: int = 0
    """Received but unusable: not a gossip message, or no sender address."""
    meta_published: int = 0
    loop_lag_max: float = 0.0
    """Largest event-loop lag measured, in seconds."""


class _ChangeStream:
    """Async iterator over one subscriber's queue of changes."""

    def __init__(self, queue: asyncio.Queue[MembershipChange]) -> None:
        self._queue = queue

    def __aiter__(self) -> _ChangeStream:
        return self

    async def __anext__(self) -> MembershipChange:
        return await self._queue.get()


class MembershipRunner:
    """Runs this node's gossip membership until cancelled.

    Lifecycle: start :meth:`run` as a task, then ``await`` :meth:`join`; to stop,
    ``await`` :meth:`leave` (optional: without it peers see a crash), then cancel
    the :meth:`run` task and await it, then close the transport.

    Args:
        name: this node's name (its certificate's).
        advertise_address: where peers reach this node's ``NodeService.Gossip``.
        transport: carries payloads to peers.
        config: gossip timings; ``max_piggyback_bytes`` at least
            :data:`MIN_PIGGYBACK_BYTES`.
        seeds: addresses to join through; empty for the first node of a cluster.
        meta_source: this node's current metadata blob (``encode_meta(local.describe())``);
            called on the loop, so it must be quick. A failure is logged and the
            previous blob stays.
        rng_seed: seeds the machine's randomness (tests); ``None`` for a random one.
        incarnation: where this node's incarnation starts; by default the wall clock
            in seconds, so a restarted node outbids its previous life at once.
        meta_refresh_interval: least time between two reads of ``meta_source``.
        max_in_flight_sends: sends in progress at once; more are dropped.
        send_timeout: deadline of one send (:data:`DEFAULT_SEND_TIMEOUT`). It is not
            the probe timeout: the machine keeps its own timers, and a deadline on
            the call only decides when a message still unread by a busy peer is
            thrown away. A short one turns a CPU-starved cluster's slow acks and
            refutations into lost ones, and false deaths follow.
        loop_lag_interval: how often the event loop's lag is measured.
        change_queue_size: changes buffered per subscriber; a slow one loses the
            oldest (it can always re-read :meth:`members`).

    Raises:
        MembershipConfigError: a setting is out of range.
    """

    def __init__(
        self,
        *,
        name: str,
        advertise_address: str,
        transport: GossipTransport,
        config: GossipConfig,
        seeds: Sequence[str],
        meta_source: Callable[[], bytes],
        rng_seed: int | None = None,
        incarnation: int | None = None,
        meta_refresh_interval: float = 1.0,
        max_in_flight_sends: int = 256,
        send_timeout: float | None = None,
        loop_lag_interval: float = 0.1,
        change_queue_size: int = 1024,
    ) -> None:
        if config.max_piggyback_bytes < MIN_PIGGYBACK_BYTES:
            raise MembershipConfigError(
                f"gossip config: max_piggyback_bytes is {config.max_piggyback_bytes}, too small "
                f"for a node's metadata; use at least {MIN_PIGGYBACK_BYTES} "
                f"({GRPC_PIGGYBACK_BYTES} recommended over gRPC)"
            )
        for label, value in (
            ("meta_refresh_interval", meta_refresh_interval),
            ("loop_lag_interval", loop_lag_interval),
            ("send_timeout", DEFAULT_SEND_TIMEOUT if send_timeout is None else send_timeout),
            ("max_in_flight_sends", max_in_flight_sends),
        ):
            if value <= 0:
                raise MembershipConfigError(f"membership: {label} must be > 0, got {value}")
        self.name = name
        self.address = advertise_address
        self._transport = transport
        self._config = config
        self._seeds = tuple(seeds)
        self._meta_source = meta_source
        self._meta_refresh_interval = meta_refresh_interval
        self._max_in_flight = max_in_flight_sends
        self._send_timeout = DEFAULT_SEND_TIMEOUT if send_timeout is None else send_timeout
        self._loop_lag_interval = loop_lag_interval
        self._stats = MembershipStats()
        self._changes: Broadcaster[MembershipChange] = Broadcaster(queue_size=change_queue_size)
        self._decoded: dict[str, tuple[bytes, types_pb2.NodeInfo | None]] = {}
        self._tasks: asyncio.TaskGroup | None = None
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._running = asyncio.Event()
        self._joined = asyncio.Event()
        self._progress = asyncio.Event()
        """Set after each tick and each finished send: what :meth:`leave` waits on."""
        self._join_requested = False
        self._urgent_meta = False
        self._last_meta_error = ""
        self._last_meta_read_at = 0.0
        self._last_drop_log: dict[str, float] = {}
        now = time.monotonic()
        self._next_meta_refresh_at = now + meta_refresh_interval
        self._machine = Membership(
            name,
            advertise_address,
            config=config,
            rng=random.Random(rng_seed),
            now=now,
            meta=self._read_meta(0) or b"",
            incarnation=int(time.time()) if incarnation is None else incarnation,
            on_event=self._on_event,
        )

    # --- reading -----------------------------------------------------------------------

    @property
    def joined(self) -> bool:
        """True once a seed answered the join (at once without seeds)."""
        return self._machine.joined

    @property
    def leaving(self) -> bool:
        return self._machine.leaving

    @property
    def incarnation(self) -> int:
        """This node's current incarnation (raised by each refutation)."""
        return self._machine.incarnation

    @property
    def health_score(self) -> int:
        """Lifeguard local health: 0 is healthy."""
        return self._machine.health_score

    @property
    def stats(self) -> MembershipStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats)

    def members(self, states: Iterable[MemberState] | None = None) -> list[ClusterMember]:
        """Every member known (this node and tombstones included), by name; only
        those in ``states`` if given."""
        return [self._view(member) for member in self._machine.members(states)]

    def member(self, name: str) -> ClusterMember | None:
        member = self._machine.member(name)
        return None if member is None else self._view(member)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[MembershipChange]]:
        """Membership changes from now on, while the context is open::

        async with runner.subscribe() as changes:
            async for change in changes:
                ...
        """
        async with self._changes.subscribe() as queue:
            yield _ChangeStream(queue)

    # --- the node's acts ---------------------------------------------------------------

    async def run(self) -> None:
        """Drive the membership until cancelled.

        Raises:
            MembershipError: the runner is already running.
        """
        if self._running.is_set():
            raise MembershipError(f"membership of {self.name} is already running")
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                self._running.set()
                try:
                    tasks.create_task(self._watch_loop_lag())
                    await self._drive()
                finally:
                    # No new sends from here on; the TaskGroup cancels those in flight.
                    self._tasks = None
        finally:
            self._running.clear()

    async def join(self) -> None:
        """Join the cluster through the seeds; returns once one answered.

        Waits for :meth:`run` to be running first. The machine asks every seed again
        each ``join_retry_interval`` until one answers; a join that takes long is
        logged at growing intervals. Cancel it to give up.

        Raises:
            MembershipError: this node has left (a node that left cannot rejoin).
        """
        if self._machine.leaving:
            raise MembershipError(f"{self.name} has left the cluster and cannot join again")
        await self._running.wait()
        if not self._join_requested:
            self._join_requested = True
            self._dispatch(self._machine.join(self._seeds, time.monotonic()))
            self._wake.set()
        self._note_joined()
        started = time.monotonic()
        wait = _JOIN_NOTE_FIRST
        while not self._joined.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._joined.wait()
            if not self._joined.is_set():
                _log.warning(
                    "still joining: no seed answered after %.0f s",
                    time.monotonic() - started,
                    extra={"event": "membership.join_waiting", "seeds": ",".join(self._seeds)},
                )
                wait = min(wait * 2, _JOIN_NOTE_MAX)
        _log.info(
            "joined the cluster",
            extra={"event": "membership.joined", "node": self.name, "members": self._live_count()},
        )

    async def leave(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bounded drain
        """Announce that this node leaves (peers record LEFT, not DEAD) and wait up to
        ``timeout`` seconds for the announcement to be gossiped out.

        Returns:
            True when every pending broadcast went out and no send is in flight;
            False when ``timeout`` ran out first, or the runner is not running.
        """
        self._dispatch(self._machine.leave(time.monotonic()))
        self._wake.set()
        if not self._running.is_set():
            return False
        try:
            async with asyncio.timeout(timeout):
                while self._in_flight or (
                    self._machine.pending_broadcasts and self._machine.cluster_size() > 1
                ):
                    self._progress.clear()
                    await self._progress.wait()
        except TimeoutError:
            _log.warning(
                "left without gossiping it to everyone: %.1f s was not enough",
                timeout,
                extra={"event": "membership.leave_timeout", "node": self.name},
            )
            return False
        return True

    def force_leave(self, name: str) -> ClusterMember:
        """Record the dead member ``name`` as LEFT and gossip it (``murmur node
        remove``); returns the member as it now stands.

        Raises:
            MemberNotFoundError: no member has that name.
            MemberNotDownError: the member is this node, or alive or suspect here.
        """
        member = self._machine.member(name)
        if member is None:
            raise MemberNotFoundError(f"no node named {name!r} in this cluster")
        if name == self.name or member.state.is_live:
            state = "this node" if name == self.name else member.state.value
            raise MemberNotDownError(
                f"node {name!r} is {state}: only a dead node can be removed; "
                "stop its daemon first (drain it before, to let its jobs finish)"
            )
        self._dispatch(self._machine.force_leave(name, time.monotonic()))
        self._wake.set()
        return self._view(self._machine.member(name) or member)

    def request_meta_refresh(self) -> None:
        """Read ``meta_source`` again soon and send the result out at once, not only on
        probe traffic (a change that should not wait: a drain, GPUs taken or freed).
        Reads asked for this way are at least ``URGENT_META_SPACING_SECONDS`` apart,
        so a busy node whose GPUs change with every run pushes at most a few updates
        a second, each carrying the latest facts."""
        self._urgent_meta = True
        spacing = min(self._meta_refresh_interval, URGENT_META_SPACING_SECONDS)
        self._next_meta_refresh_at = min(
            self._next_meta_refresh_at,
            max(time.monotonic(), self._last_meta_read_at + spacing),
        )
        self._wake.set()

    async def receive(self, from_address: str, payload: bytes) -> bool:
        """Handle one gossip message from the node whose gossip address is
        ``from_address``. Never raises (cancellation aside).

        Returns:
            False when the message was dropped (unusable), True otherwise.
        """
        self._stats.messages_received += 1
        if not from_address or len(from_address) > _MAX_ADDRESS_CHARS:
            self._dropped(from_address[:_MAX_ADDRESS_CHARS], "no usable sender address")
            return False
        try:
            message = decode(payload)
        except GossipDecodeError as exc:
            self._dropped(from_address, str(exc))
            return False
        try:
            out = self._machine.receive(message, from_address, time.monotonic())
        except Exception:
            # A bug in the machine; the RPC must not fail for it.
            _log.exception(
                "gossip message could not be handled",
                extra={"event": "membership.receive_failed", "peer": from_address},
            )
            return False
        self._dispatch(out)
        self._note_joined()
        self._wake.set()
        return True

    # --- the loops ---------------------------------------------------------------------

    async def _drive(self) -> None:
        while True:
            self._wake.clear()
            now = time.monotonic()
            if now >= self._machine.next_deadline():
                self._dispatch(self._machine.tick(now))
                self._note_joined()
                self._progress.set()
            if now >= self._next_meta_refresh_at:
                self._refresh_meta(now)
            wake_at = min(self._machine.next_deadline(), self._next_meta_refresh_at)
            delay = max(wake_at - time.monotonic(), _MIN_IDLE)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _watch_loop_lag(self) -> None:
        interval = self._loop_lag_interval
        while True:
            started = time.monotonic()
            await asyncio.sleep(interval)
            lag = time.monotonic() - started - interval
            if lag <= 0:
                continue
            self._stats.loop_lag_max = max(self._stats.loop_lag_max, lag)
            self._machine.report_loop_lag(lag)
            if lag >= self._config.loop_lag_threshold:
                _log.warning(
                    "event loop ran %.3f s late; gossip trusts its own view less",
                    lag,
                    extra={"event": "membership.loop_lag", "lag_seconds": lag},
                )

    # --- sending -----------------------------------------------------------------------

    def _dispatch(self, outgoing: Iterable[Outgoing]) -> None:
        for item in outgoing:
            tasks = self._tasks
            if tasks is None or self._in_flight >= self._max_in_flight:
                self._stats.sends_dropped += 1
                continue
            try:
                payload = encode(item.message)
            except ValueError:
                _log.exception(
                    "gossip message could not be encoded",
                    extra={"event": "membership.encode_failed", "peer": item.destination},
                )
                continue
            delivery = self._deliver(item.destination, payload)
            try:
                tasks.create_task(delivery)
            except RuntimeError:  # the TaskGroup is shutting down
                delivery.close()
                self._stats.sends_dropped += 1
                continue
            self._in_flight += 1

    async def _deliver(self, address: str, payload: bytes) -> None:
        try:
            outcome = await self._transport.send(
                address, payload, from_address=self.address, timeout=self._send_timeout
            )
        except Exception as exc:
            # One lost datagram; the TaskGroup must not fail for it.
            self._stats.sends_failed += 1
            _log.warning(
                "gossip send to %s failed: %s",
                address,
                exc,
                extra={"event": "membership.send_failed", "peer": address},
            )
            return
        finally:
            self._in_flight -= 1
            self._progress.set()
        if outcome is SendOutcome.OK:
            self._stats.messages_sent += 1
        elif outcome is SendOutcome.TIMEOUT:
            self._stats.sends_timed_out += 1
        elif outcome is SendOutcome.OTHER:
            self._stats.sends_failed += 1
        else:
            self._stats.sends_refused += 1
            self._dispatch(self._machine.report_refused(address, time.monotonic()))
            self._wake.set()

    # --- metadata ----------------------------------------------------------------------

    def _read_meta(self, version: int) -> bytes | None:
        """``meta_source()``, or None (logged) if it failed or its blob cannot be
        gossiped."""
        self._last_meta_read_at = time.monotonic()
        try:
            blob = self._meta_source()
        except Exception as exc:
            self._note_meta_error(f"reading this node's metadata failed: {exc}")
            return None
        alive = Alive(self.name, 0, self.address, blob, version)
        size = update_size(alive) + 10  # room for an incarnation varint
        if size > self._config.max_piggyback_bytes:
            self._note_meta_error(
                f"this node's metadata is {len(blob)} bytes, too large to gossip "
                f"(max_piggyback_bytes {self._config.max_piggyback_bytes})"
            )
            return None
        self._last_meta_error = ""
        return blob

    def _note_meta_error(self, message: str) -> None:
        if message != self._last_meta_error:
            self._last_meta_error = message
            _log.error(message, extra={"event": "membership.meta_failed", "node": self.name})

    def _refresh_meta(self, now: float) -> None:
        self._next_meta_refresh_at = now + self._meta_refresh_interval
        local = self._machine.local
        blob = self._read_meta(local.meta_version + 1)
        urgent, self._urgent_meta = self._urgent_meta, False
        if blob is None or blob == local.meta:
            return
        self._stats.meta_published += 1
        self._dispatch(self._machine.update_local_meta(blob, now, urgent=urgent))

    # --- members and events ------------------------------------------------------------

    def _view(self, member: Member) -> ClusterMember:
        cached = self._decoded.get(member.name)
        if cached is None or cached[0] != member.meta:
            info = decode_meta(member.meta)
            if info is not None and info.name != member.name:
                _log.warning(
                    "dropped gossip metadata of %s that names %s",
                    member.name,
                    info.name,
                    extra={"event": "membership.meta_invalid", "peer": member.name},
                )
                info = None
            cached = (member.meta, info)
            self._decoded[member.name] = cached
        if cached[1] is None:
            return ClusterMember(member, None)
        info = types_pb2.NodeInfo()
        info.CopyFrom(cached[1])
        info.incarnation = member.incarnation
        if not (member.state is MemberState.ALIVE and info.state == types_pb2.NODE_STATE_DRAINING):
            info.state = _NODE_STATES[member.state]
        return ClusterMember(member, info)

    def _on_event(self, event: MembershipEvent) -> None:
        if event.kind is EventKind.FORGOTTEN:
            self._decoded.pop(event.member.name, None)
        if self._changes.subscriber_count:
            self._changes.publish(MembershipChange(event.kind, self._view(event.member), event.at))
        # Metadata changes with every load sample: not worth a line each.
        level = logging.DEBUG if event.kind is EventKind.META_UPDATED else logging.INFO
        _log.log(
            level,
            "member %s: %s",
            event.member.name,
            event.kind.value,
            extra={
                "event": f"membership.{event.kind.value}",
                "peer": event.member.name,
                "peer_address": event.member.address,
                "incarnation": event.member.incarnation,
            },
        )

    # --- small helpers -----------------------------------------------------------------

    def _note_joined(self) -> None:
        if self._machine.joined and not self._joined.is_set() and self._join_requested:
            self._joined.set()

    def _live_count(self) -> int:
        return self._machine.cluster_size()

    def _dropped(self, peer: str, reason: str) -> None:
        self._stats.messages_dropped += 1
        now = time.monotonic()
        if now - self._last_drop_log.get(peer, -_DROP_LOG_INTERVAL) < _DROP_LOG_INTERVAL:
            return
        if len(self._last_drop_log) > 1024:
            self._last_drop_log.clear()
        self._last_drop_log[peer] = now
        _log.warning(
            "dropped a gossip message from %s: %s",
            peer,
            reason,
            extra={"event": "membership.message_dropped", "peer": peer},
        )
