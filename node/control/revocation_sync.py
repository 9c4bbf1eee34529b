"""`RevocationSync`: how this node learns the certificate deny list, and keeps it.

The list's source is the control log (``RevokeCertificate``, applied by every
voter); every node, voter or not, enforces it (node/api/rpc/revocation.py). The
steps of CA rotations (``AddTrustedCa``, ``RetireCa``: node/trust_anchors.py)
travel with it, by the same paths and with the same guarantees: they too only
accumulate, and each list's revision is gossiped (``revocations_revision``,
``ca_changes_revision``), since a list pulled at some moment may hold every
revocation up to one index and every CA step up to another. It reaches each node
by the simplest path that is sound whatever fails:

* **A voter follows its own log**: when an entry is applied it compares the control
  state's revision (the newest revocation's log index) with its list's, and takes
  what is new.
* **Every node follows gossip**: each node gossips its list's revision in its
  NodeInfo (``revocations_revision``), sent out at once when it changes. A node
  that sees a live peer with a newer revision pulls the whole list from it
  (``ClusterService.ListRevocations``, with its node certificate) and merges it.
  The newest revision first reaches the voters (the leader at commit, followers
  a heartbeat later); from there it spreads like any gossip: a few protocol
  periods, about a second in a small cluster. Nothing is pushed, so nothing is
  lost to a node that was down or partitioned: it pulls when it hears of a newer
  revision, whenever that is.
* **The store keeps it** (the ``revocations`` table; the CA steps under one meta
  key), so a restarted node refuses a revoked certificate before it hears from
  anyone.

The list only grows, and any two lists merge by union (node/deny_list.py), so
the three paths never disagree. A revoked node cannot pull (its calls are
refused), which is as it should be.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import grpc
import grpc.aio

from murmur.certs import CertificateIdentity
from murmur.node.control.queue.ca_rotations import ca_change_message, ca_change_of
from murmur.node.control.queue.state import ControlState
from murmur.node.deny_list import DenyList, Revocation, refusal_message
from murmur.node.gossip import EventKind, MemberState
from murmur.node.membership import MembershipRunner
from murmur.node.trust_anchors import CaChange, CaChanges
from murmur.storage import RevocationRecord, Store, StoreError
from murmur.v1 import cluster_pb2

if TYPE_CHECKING:
    from murmur.v1.cluster_pb2_grpc import ClusterServiceAsyncStub

_log = logging.getLogger("murmur.revocations")

RECHECK_SECONDS = 2.0
"""The log (on a voter) and the peers' gossiped revisions are looked at when an
entry is applied or a peer's NodeInfo changes (:meth:`RevocationSync.wake`), and at
least this often besides: the retry of a failed pull, and a net under any missed
wake-up. An idle node wakes for this alone, not five times a second."""

_NEWS = frozenset({EventKind.JOINED, EventKind.ALIVE, EventKind.META_UPDATED})
"""Membership changes after which a peer may gossip a newer revision."""

CA_CHANGES_META_KEY = "trust.ca_changes"
"""Where the store keeps the CA rotation steps this node knows (a serialized
``ListRevocationsResponse`` holding only them, base64): a handful, never forgotten."""

PULL_TIMEOUT_SECONDS = 2.0
PULL_RETRY_SECONDS = 2.0
"""A peer that did not answer a pull is not asked again before this."""


def _record(revocation: Revocation) -> RevocationRecord:
    return RevocationRecord(
        index=revocation.index,
        name=revocation.name,
        serial=revocation.serial,
        revoked_at_us=revocation.revoked_at_us,
        revoked_by=revocation.by,
        reason=revocation.reason,
    )


def _from_record(record: RevocationRecord) -> Revocation:
    return Revocation(
        index=record.index,
        name=record.name,
        serial=record.serial,
        revoked_at_us=record.revoked_at_us,
        by=record.revoked_by,
        reason=record.reason,
    )


def revocation_message(revocation: Revocation) -> cluster_pb2.Revocation:
    message = cluster_pb2.Revocation(
        name=revocation.name,
        serial=revocation.serial,
        revoked_by=revocation.by,
        reason=revocation.reason,
        index=revocation.index,
    )
    message.revoked_at.FromMicroseconds(revocation.revoked_at_us)
    return message


def revocation_from_message(message: cluster_pb2.Revocation) -> Revocation:
    return Revocation(
        index=message.index,
        name=message.name,
        serial=message.serial,
        revoked_at_us=message.revoked_at.ToMicroseconds(),
        by=message.revoked_by,
        reason=message.reason,
    )


class RevocationSync:
    """Keeps this node's deny list: from its log, its peers, and its store.

    Args:
        deny_list: the list the interceptors check.
        ca_changes: the CA rotation steps this node follows (node/trust.py).
        control: this node's control state (its revocations are current on a voter;
            a non-voter's stay empty); None: follow gossip only.
        membership: gossip; None: follow the log only.
        cluster_stub: a peer's ClusterService, by address.
        on_change: called after the list grew (gossip the new revision at once).
        own_identity: this node's certificate, to say loudly when it is revoked.
    """

    def __init__(
        self,
        *,
        deny_list: DenyList,
        ca_changes: CaChanges | None = None,
        store: Store,
        control: ControlState | None,
        membership: MembershipRunner | None,
        cluster_stub: Callable[[str], ClusterServiceAsyncStub],
        on_change: Callable[[], None] = lambda: None,
        own_identity: CertificateIdentity | None = None,
        interval: float = RECHECK_SECONDS,
    ) -> None:
        self._deny = deny_list
        self._ca = ca_changes if ca_changes is not None else CaChanges()
        self._store = store
        self._control = control
        self._membership = membership
        self._cluster_stub = cluster_stub
        self._on_change = on_change
        self._own_identity = own_identity
        self._interval = interval
        self._pull_failed_at: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    @property
    def deny_list(self) -> DenyList:
        return self._deny

    @property
    def ca_changes(self) -> CaChanges:
        return self._ca

    @property
    def revision(self) -> int:
        """The trust revision: the newest log index of a revocation or a CA step held."""
        return max(self._deny.revision, self._ca.revision)

    async def load(self) -> None:
        """Takes the list this node kept before it stopped."""
        records = await self._store.list_revocations()
        self._deny.merge(_from_record(record) for record in records)
        kept = await self._store.get_meta(CA_CHANGES_META_KEY)
        if kept:
            message = cluster_pb2.ListRevocationsResponse.FromString(base64.b64decode(kept))
            self._ca.merge(ca_change_of(change) for change in message.ca_changes)
            self._on_change()
        if records:
            self._on_change()
            _log.info(
                "enforcing %d certificate revocations kept here (revision %d)",
                len(records),
                self._deny.revision,
                extra={"event": "revocations.loaded", "revision": self._deny.revision},
            )

    def wake(self) -> None:
        """Look again now: an entry was applied (maybe a revocation)."""
        self._wake.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            if self._membership is not None:
                tasks.create_task(self._wake_on_gossip(self._membership))
            while True:
                self._wake.clear()
                await self.sync_once()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._interval):
                        await self._wake.wait()

    async def _wake_on_gossip(self, membership: MembershipRunner) -> None:
        """Wakes the loop when a peer's NodeInfo (its revision among it) may be new."""
        async with membership.subscribe() as changes:
            async for change in changes:
                if change.kind in _NEWS:
                    self._wake.set()

    async def sync_once(self) -> None:
        """One look at the log and at the peers' revisions."""
        control = self._control
        if control is not None and control.revocations_revision > self._deny.revision:
            await self.learn(control.revocations(), source="the control log")
        if control is not None and control.ca_rotations.revision > self._ca.revision:
            await self.learn_ca_changes(control.ca_rotations.changes(), source="the control log")
        if self._membership is not None:
            await self._follow_gossip(self._membership)

    async def learn(self, revocations: Iterable[Revocation], *, source: str) -> list[Revocation]:
        """Merges revocations into the list, then keeps the new ones in the store."""
        async with self._lock:
            added = self._deny.merge(revocations)
            if not added:
                return added
            for revocation in added:
                _log.warning(
                    "certificate revocation %d: %s by %s%s (from %s)",
                    revocation.index,
                    revocation.target,
                    revocation.by,
                    f": {revocation.reason}" if revocation.reason else "",
                    source,
                    extra={
                        "event": "revocations.learnt",
                        "index": revocation.index,
                        "target": revocation.target,
                    },
                )
            self._note_own_revocation()
            self._on_change()
            try:
                await self._store.add_revocations([_record(r) for r in added])
            except StoreError:
                # Enforced from memory all the same; the log or a peer gives it back
                # after a restart.
                _log.exception("could not keep certificate revocations in the store")
            return added

    async def learn_ca_changes(self, changes: Iterable[CaChange], *, source: str) -> list[CaChange]:
        """Merges CA rotation steps (the node takes them into use: a listener of
        ``ca_changes``), then keeps them all in the store."""
        async with self._lock:
            added = self._ca.merge(changes)
            if not added:
                return added
            for change in added:
                _log.warning(
                    "CA rotation step %d: CA %s... %s by %s (from %s)",
                    change.index,
                    change.fingerprint[:16],
                    "retired" if change.retired else "added, signing from now on",
                    change.by,
                    source,
                    extra={"event": "trust.ca_change", "index": change.index},
                )
            self._on_change()
            kept = cluster_pb2.ListRevocationsResponse(
                ca_changes=[ca_change_message(c) for c in self._ca.entries()]
            )
            try:
                await self._store.set_meta(
                    CA_CHANGES_META_KEY, base64.b64encode(kept.SerializeToString()).decode()
                )
            except StoreError:
                _log.exception("could not keep the CA rotation steps in the store")
            return added

    def _note_own_revocation(self) -> None:
        own = self._own_identity
        if own is None:
            return
        revocation = self._deny.refusal(own)
        if revocation is not None:
            _log.error(
                "this node's own %s: other nodes refuse its calls; "
                "it needs a new name and join token to come back",
                refusal_message(own, revocation),
                extra={"event": "revocations.own_certificate", "index": revocation.index},
            )
            self._own_identity = None  # said once

    async def _follow_gossip(self, membership: MembershipRunner) -> None:
        now = time.monotonic()
        best: tuple[int, str, str] | None = None
        for member in membership.members((MemberState.ALIVE,)):
            info = member.info
            if info is None or member.name == membership.name:
                continue
            # Each list has its own revision: a peer may hold every revocation up
            # to one index and every CA step up to another.
            ahead = max(
                info.revocations_revision - self._deny.revision,
                info.ca_changes_revision - self._ca.revision,
            )
            if ahead <= 0:
                continue
            revision = info.revocations_revision + info.ca_changes_revision
            if now - self._pull_failed_at.get(member.name, -PULL_RETRY_SECONDS) < (
                PULL_RETRY_SECONDS
            ):
                continue
            if best is None or revision > best[0]:
                best = (revision, member.name, member.address)
        if best is not None:
            await self.pull(best[1], best[2])

    async def pull(self, name: str, address: str) -> bool:
        """Takes node ``name``'s list; False when it did not answer."""
        try:
            answer = await self._cluster_stub(address).ListRevocations(
                cluster_pb2.ListRevocationsRequest(), timeout=PULL_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as exc:
            self._pull_failed_at[name] = time.monotonic()
            _log.warning(
                "could not pull certificate revocations from %s: %s",
                name,
                exc.details() or exc.code(),
                extra={"event": "revocations.pull_failed", "peer": name},
            )
            return False
        self._pull_failed_at.pop(name, None)
        await self.learn(
            (revocation_from_message(m) for m in answer.revocations), source=f"node {name}"
        )
        await self.learn_ca_changes(
            (ca_change_of(m) for m in answer.ca_changes), source=f"node {name}"
        )
        return True
