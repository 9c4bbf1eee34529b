"""The certificate deny list: what this node refuses, by serial and by name.

A revocation is a command of the control log (``RevokeCertificate``,
node/control/queue/commands.py), so the list is the same on every voter; every
other node learns it from its peers (node/control/revocation_sync.py). Entries
are never taken back: the list only grows, and merging two lists is their
union, so whichever way an entry arrives (the log, a peer, the local store
after a restart), the result is the same.

Two kinds of entry:

* **by serial**: exactly that certificate;
* **by name**: every certificate with that common name whose validity starts
  (``not_before``) at or before the revocation time. A certificate issued after
  the revocation, for a returning user (``murmur user add``) or a node that
  joins again under a fresh token, starts later and is accepted: the CA starts
  every certificate it signs for a revoked name after the newest revocation of
  that name (:meth:`DenyList.not_before_floor`), although it otherwise backdates
  ``not_before`` by ``CLOCK_SKEW_ALLOWANCE`` for lagging clocks. Certificates
  carry whole seconds, so the floor is the next whole second.

The check (:meth:`DenyList.refusal`) is two dict lookups, run on every call; it
is deliberately not cached with the parsed identity (node/api/rpc/caller.py),
which never changes while the list does.

Each entry carries the log index of its entry: the list's ``revision`` is the
newest index it holds, and a list at revision R holds every revocation the log
has up to R (every list is the log's, or the union of such lists). Gossip
carries each node's revision; a node that sees a higher one pulls the list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from murmur.certs import CertificateIdentity

_log = logging.getLogger("murmur.revocations")


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation, as the control log holds it.

    Exactly one of ``name`` and ``serial`` is set.
    """

    index: int
    """The log index of the entry that holds it (this list's revision when newest)."""
    name: str
    serial: str
    """Lowercase hex, no prefix, as ``CertificateIdentity.serial``."""
    revoked_at_us: int
    """When it was revoked (microseconds since the epoch, the admin's node's clock)."""
    by: str
    reason: str

    @property
    def revoked_at(self) -> datetime:
        return datetime.fromtimestamp(self.revoked_at_us / 1_000_000, UTC)

    @property
    def target(self) -> str:
        """The name, or ``serial:<hex>``: how messages and the audit log say it."""
        return self.name or f"serial:{self.serial}"


def normalize_serial(text: str) -> str:
    """A serial as certificates' identities spell it: lowercase hex, no ``0x``, no
    colons, no leading zeros.

    Raises:
        ValueError: not a hexadecimal number.
    """
    cleaned = text.strip().lower().removeprefix("serial:").removeprefix("0x").replace(":", "")
    if not all(char in "0123456789abcdef" for char in cleaned) or not cleaned:
        raise ValueError(f"serial {text!r} is not a hexadecimal number")
    return format(int(cleaned, 16), "x")


class DenyList:
    """The revocations this node enforces; grows only.

    Listeners (:meth:`add_listener`) are called, in the event loop, after each
    merge that added something: the open-stream registry ends the streams of
    callers it now refuses.
    """

    def __init__(self) -> None:
        self._by_index: dict[int, Revocation] = {}
        self._serials: dict[str, Revocation] = {}
        self._names: dict[str, Revocation] = {}
        """name → its newest revocation: a certificate older than that one is refused."""
        self._revision = 0
        self._listeners: list[Callable[[list[Revocation]], None]] = []

    @property
    def revision(self) -> int:
        """The newest log index held; 0 when empty."""
        return self._revision

    def __len__(self) -> int:
        return len(self._by_index)

    def entries(self) -> list[Revocation]:
        """Every revocation, in log order."""
        return [self._by_index[index] for index in sorted(self._by_index)]

    def add_listener(self, listener: Callable[[list[Revocation]], None]) -> None:
        self._listeners.append(listener)

    def merge(self, revocations: Iterable[Revocation]) -> list[Revocation]:
        """Adds the revocations not held yet; returns them (in log order)."""
        added: list[Revocation] = []
        for revocation in revocations:
            if revocation.index in self._by_index or revocation.index <= 0:
                continue
            if not revocation.name and not revocation.serial:
                continue
            self._by_index[revocation.index] = revocation
            if revocation.serial:
                self._serials.setdefault(revocation.serial, revocation)
            if revocation.name:
                known = self._names.get(revocation.name)
                if known is None or revocation.revoked_at_us > known.revoked_at_us:
                    self._names[revocation.name] = revocation
            self._revision = max(self._revision, revocation.index)
            added.append(revocation)
        added.sort(key=lambda revocation: revocation.index)
        if added:
            for listener in list(self._listeners):
                try:
                    listener(added)
                except Exception:  # one listener's bug must not keep the others from hearing
                    _log.exception("a deny list listener failed")
        return added

    def refusal(self, identity: CertificateIdentity) -> Revocation | None:
        """The revocation that denies this certificate; None when it is not revoked."""
        by_serial = self._serials.get(identity.serial)
        if by_serial is not None:
            return by_serial
        by_name = self._names.get(identity.name)
        if by_name is not None and identity.not_before <= by_name.revoked_at:
            return by_name
        return None

    def not_before_floor(self, name: str) -> datetime | None:
        """The earliest ``not_before`` a new certificate for ``name`` may have so that
        the list accepts it: the whole second after the name's newest revocation;
        None when the name was never revoked."""
        newest = self._names.get(name)
        if newest is None:
            return None
        return newest.revoked_at.replace(microsecond=0) + timedelta(seconds=1)


def refusal_message(identity: CertificateIdentity, revocation: Revocation) -> str:
    """What a refused caller is told: which certificate, revoked when, by whom and why."""
    what = (
        f"certificate {identity.serial} ({identity.name})"
        if revocation.serial
        else f"certificate of {identity.name}"
    )
    when = revocation.revoked_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    why = f": {revocation.reason}" if revocation.reason else ""
    return f"{what} was revoked at {when} by {revocation.by}{why}"
