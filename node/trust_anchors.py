"""The lab CAs this node trusts, and which one signs: what a CA rotation changes.

A rotation is two commands of the control log, so that every node follows the same
steps in the same order:

* ``AddTrustedCa`` (``murmur ca rotate start``): a new CA joins the trust anchors
  and signs every certificate from then on. It comes with a *cross certificate*:
  the new CA's name and key certified by the CA it succeeds. During the overlap
  window every node trusts both CAs, renews its own certificate from the new one,
  and presents the cross certificate after it, so a user or node that still trusts
  only the old CA verifies it; users renew their bundles (``murmur user renew``).
* ``RetireCa`` (``murmur ca rotate finish``): the old CA leaves the anchors. A
  certificate it issued is refused at the next handshake, everywhere.

The changes reach every node the way revocations do (node/control/revocation_sync.py:
a voter's own log, a peer's list pulled when gossip shows a newer revision, the
local store after a restart), and, like revocations, they only accumulate: two lists
merge by union, whatever way each change arrived. What a node trusts is then a pure
function of the list and the anchors its own identity file started with
(:func:`trust_of`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from murmur.certs import certificate_fingerprint, is_ca_certificate

_log = logging.getLogger("murmur.trust")


@dataclass(frozen=True, slots=True)
class CaChange:
    """One step of a rotation, as the control log holds it."""

    index: int
    """The log index of its entry."""
    fingerprint: str
    """The CA's: lowercase hex SHA-256 of its certificate's DER."""
    retired: bool
    """False: the CA was added (and signs from then on); True: it was retired."""
    certificate_pem: bytes
    """The added CA's certificate; empty for a retirement."""
    cross_certificate_pem: bytes
    """The added CA certified by the CA it succeeds; empty for a retirement."""
    by: str
    at_us: int


@dataclass(frozen=True, slots=True)
class Trust:
    """What a node trusts and presents, given the changes it knows."""

    anchors_pem: bytes
    """The trusted CA certificates (the signing one first): TLS's root certificates."""
    signing_fingerprint: str
    """The CA that signs certificates now."""
    intermediate_pem: bytes
    """Presented after a certificate of the signing CA: its cross certificate while
    the CA it succeeds is still trusted (the overlap window); else empty."""
    overlap: bool
    """A rotation is under way: more than one CA is trusted."""
    ignored: tuple[int, ...] = ()
    """Log indices of steps that did not check out (see ``trust_of``)."""
    fingerprints: tuple[str, ...] = ()
    """The trusted CAs' fingerprints, as ``anchors_pem`` lists them."""
    signing_certificate: x509.Certificate | None = None
    """The certificate of the CA that signs now."""


def trust_of(base_anchors: Sequence[x509.Certificate], changes: Iterable[CaChange]) -> Trust:
    """The trust that follows from a node's own anchors and the rotation log.

    Every node checks every step itself, whoever handed it over (its own log, or a
    peer): an addition counts only if its cross certificate is the added CA's name
    and key signed by the CA that signs at that point, and a retirement only of a
    trusted CA that does not sign. A step that fails is ignored (``Trust.ignored``):
    a node certificate that forges one cannot make the cluster trust its own CA,
    nor retire the one that signs.

    Args:
        base_anchors: the CAs the node's identity file trusts (the first signs
            while no change names another).
        changes: every change known, in any order.
    """
    certificates: dict[str, x509.Certificate] = {}
    for anchor in base_anchors:
        certificates.setdefault(certificate_fingerprint(anchor), anchor)
    trusted = list(certificates)
    signing = trusted[0] if trusted else ""
    newest_added: CaChange | None = None
    ignored: list[int] = []
    for change in sorted(changes, key=lambda change: change.index):
        if change.retired:
            if change.fingerprint in trusted and change.fingerprint != signing:
                trusted.remove(change.fingerprint)
            elif change.fingerprint in trusted:
                ignored.append(change.index)
            continue
        if change.fingerprint in certificates:
            continue  # known already (a node that joined after the step starts from it)
        added = _checked_addition(change, certificates.get(signing))
        if added is None:
            ignored.append(change.index)
            continue
        certificates[change.fingerprint] = added
        trusted.append(change.fingerprint)
        signing, newest_added = change.fingerprint, change
    ordered = [signing, *(fp for fp in trusted if fp != signing)] if signing else trusted
    overlap = len(ordered) > 1
    intermediate = b""
    if overlap and newest_added is not None and newest_added.fingerprint == signing:
        intermediate = newest_added.cross_certificate_pem
    return Trust(
        anchors_pem=b"".join(certificates[fp].public_bytes(Encoding.PEM) for fp in ordered),
        signing_fingerprint=signing,
        intermediate_pem=intermediate,
        overlap=overlap,
        ignored=tuple(ignored),
        fingerprints=tuple(ordered),
        signing_certificate=certificates.get(signing),
    )


def _checked_addition(
    change: CaChange, signing: x509.Certificate | None
) -> x509.Certificate | None:
    """The added CA's certificate, when the step is sound: a self-signed CA whose
    name and key the cross certificate carries, signed by ``signing``."""
    if signing is None:
        return None
    try:
        added = x509.load_pem_x509_certificate(change.certificate_pem)
        cross = x509.load_pem_x509_certificate(change.cross_certificate_pem)
        if certificate_fingerprint(added) != change.fingerprint:
            return None
        if not (is_ca_certificate(added) and is_ca_certificate(cross)):
            return None
        added.verify_directly_issued_by(added)
        if cross.subject != added.subject or cross.public_key() != added.public_key():
            return None
        cross.verify_directly_issued_by(signing)
    except Exception:  # unparseable, or a signature that does not verify
        return None
    return added


class CaChanges:
    """The rotation steps this node knows; grows only.

    Listeners (:meth:`add_listener`) are called after each merge that added
    something: the node takes the new trust into use.
    """

    def __init__(self) -> None:
        self._by_index: dict[int, CaChange] = {}
        self._listeners: list[Callable[[list[CaChange]], None]] = []

    @property
    def revision(self) -> int:
        """The newest log index held; 0 when none."""
        return max(self._by_index, default=0)

    def entries(self) -> list[CaChange]:
        """Every change, in log order."""
        return [self._by_index[index] for index in sorted(self._by_index)]

    def add_listener(self, listener: Callable[[list[CaChange]], None]) -> None:
        self._listeners.append(listener)

    def merge(self, changes: Iterable[CaChange]) -> list[CaChange]:
        """Adds the changes not held yet; returns them, in log order."""
        added = []
        for change in changes:
            if change.index <= 0 or change.index in self._by_index or not change.fingerprint:
                continue
            self._by_index[change.index] = change
            added.append(change)
        added.sort(key=lambda change: change.index)
        if added:
            for listener in list(self._listeners):
                try:
                    listener(added)
                except Exception:  # one listener's bug must not keep the others from hearing
                    _log.exception("a CA change listener failed")
        return added


def rotation_in_progress(changes: Sequence[CaChange]) -> CaChange | None:
    """The ``AddTrustedCa`` of the rotation under way (``changes`` in log order):
    the newest addition, while a CA it succeeds has not been retired since; None
    when no rotation is open."""
    newest_added: CaChange | None = None
    retired_since = False
    for change in changes:
        if change.retired:
            retired_since = newest_added is not None
        else:
            newest_added, retired_since = change, False
    if newest_added is None or retired_since:
        return None
    return newest_added
