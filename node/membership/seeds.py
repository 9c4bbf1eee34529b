"""Where a node finds the cluster again when it starts: its seed addresses.

A node joins gossip through any member that answers. At its first start that is
the node that signed its certificate (the join's issuer); afterwards it is
whoever it last saw alive, which this module keeps in the node's store, the way
Serf keeps a snapshot: a whole lab powered back on finds itself without anyone
typing an address, whichever server comes up first. Operators may add seeds of
their own (``seeds`` in the config) for a node whose peers all moved.

The book is advisory: an address that no longer answers costs one refused
connection per join retry, and the list is capped so a large cluster does not
make every start dial hundreds of peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Iterable, Sequence

from murmur.node.gossip import EventKind, MemberState
from murmur.node.membership.runner import MembershipRunner
from murmur.storage import Store

_log = logging.getLogger("murmur.membership")

PEERS_META_KEY = "membership-peers"
ISSUER_META_KEY = "membership-issuer"
MAX_REMEMBERED_PEERS = 16
_SETTLE_SECONDS = 1.0
_MEMBERSHIP_KINDS = frozenset({EventKind.JOINED, EventKind.DEAD, EventKind.LEFT})


class SeedBook:
    """The seed addresses kept in this node's store."""

    def __init__(self, store: Store, *, own_address: str) -> None:
        self._store = store
        self._own = own_address
        self._saved: tuple[str, ...] = ()

    async def remember_issuer(self, address: str) -> None:
        """Keep the address of the node that signed our certificate: the first seed,
        and a last resort when every remembered peer is gone."""
        if address and address != self._own:
            await self._store.set_meta(ISSUER_META_KEY, address)

    async def seeds(self, configured: Iterable[str] = ()) -> list[str]:
        """Addresses to join through: configured ones, the issuer, then remembered
        peers; never our own address, each once."""
        issuer = await self._store.get_meta(ISSUER_META_KEY)
        raw = await self._store.get_meta(PEERS_META_KEY)
        remembered: list[str] = []
        if raw:
            try:
                loaded = json.loads(raw)
            except ValueError:
                _log.warning(
                    "forgot remembered peers: unreadable record",
                    extra={"event": "membership.peers_unreadable"},
                )
            else:
                if isinstance(loaded, list):
                    remembered = [str(item) for item in loaded]
        self._saved = tuple(remembered)
        ordered = [*configured, *([issuer] if issuer else []), *remembered]
        return [address for address in dict.fromkeys(ordered) if address and address != self._own]

    async def remember(self, addresses: Sequence[str]) -> bool:
        """Keep up to :data:`MAX_REMEMBERED_PEERS` of ``addresses`` (a random sample
        when there are more); returns whether the record changed."""
        chosen = sorted({a for a in addresses if a and a != self._own})
        if len(chosen) > MAX_REMEMBERED_PEERS:
            kept = set(self._saved) & set(chosen)
            fresh = [a for a in chosen if a not in kept]
            chosen = sorted(
                list(kept)[:MAX_REMEMBERED_PEERS]
                + random.sample(fresh, max(0, MAX_REMEMBERED_PEERS - len(kept)))
            )
        if tuple(chosen) == self._saved or not chosen:
            return False
        await self._store.set_meta(PEERS_META_KEY, json.dumps(chosen))
        self._saved = tuple(chosen)
        return True

    async def keep_up_to_date(self, runner: MembershipRunner, *, interval: float) -> None:
        """Record the live peers soon after membership changes (a join, a death, a
        departure) and at least every ``interval`` seconds, until cancelled."""
        async with runner.subscribe() as changes:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        async for change in changes:
                            if change.kind in _MEMBERSHIP_KINDS:
                                break
                # Let a burst of changes (a cluster starting) settle into one write.
                await asyncio.sleep(_SETTLE_SECONDS)
                live = runner.members((MemberState.ALIVE, MemberState.SUSPECT))
                try:
                    await self.remember([m.address for m in live if m.name != runner.name])
                except Exception:
                    # A full disk must not stop gossip; the next round tries again.
                    _log.exception(
                        "could not record the live peers",
                        extra={"event": "membership.peers_failed"},
                    )
