"""CA rotation steps in the replicated control state (node/trust_anchors.py).

Pure, like the rest of the state. Rules, one command at a time; a refusal changes
nothing:

- ``AddTrustedCa``: a CA certificate (self-signed, a CA) not added before, with
  its cross certificate (the same name and key, issued by another CA); refused
  while a rotation is under way (an addition not yet followed by a retirement).
- ``RetireCa``: only during a rotation, never the CA added last (it signs), and
  only a CA not retired before.

The steps are few (two per rotation) and never forgotten, so any node that can
still talk to a peer learns every step. The state checks what it can without a
node's own trust anchors; each node checks the cross certificates against what it
trusts (node/trust_anchors.py, ``trust_of``).
"""

from __future__ import annotations

from cryptography import x509

from murmur.certs import certificate_fingerprint, is_ca_certificate
from murmur.node.control.queue.codec import ControlSnapshotError
from murmur.node.control.queue.commands import AddTrustedCa, RetireCa
from murmur.node.control.queue.results import ApplyResult, ErrorKind, refused
from murmur.node.trust_anchors import CaChange, rotation_in_progress
from murmur.v1 import trust_pb2

MAX_CERTIFICATE_BYTES = 16 * 1024


class CaRotationTable:
    """Every rotation step the log holds, in log order."""

    def __init__(self, changes: list[CaChange] | None = None) -> None:
        self._changes: list[CaChange] = list(changes or [])

    @property
    def revision(self) -> int:
        """The log index of the newest step; 0 when none."""
        return self._changes[-1].index if self._changes else 0

    def changes(self) -> list[CaChange]:
        return list(self._changes)

    def add(self, index: int, command: AddTrustedCa) -> ApplyResult:
        under_way = rotation_in_progress(self._changes)
        if under_way is not None:
            return refused(
                ErrorKind.FAILED_PRECONDITION,
                f"a CA rotation is under way (to {under_way.fingerprint[:16]}..., "
                "started by " + under_way.by + "): finish it first",
            )
        problem = _certificate_problem(command)
        if problem is not None:
            return refused(ErrorKind.INVALID, problem)
        fingerprint = certificate_fingerprint(
            x509.load_pem_x509_certificate(command.certificate_pem)
        )
        if any(change.fingerprint == fingerprint for change in self._changes):
            return refused(ErrorKind.INVALID, f"CA {fingerprint[:16]}... was added before")
        self._changes.append(
            CaChange(
                index=index,
                fingerprint=fingerprint,
                retired=False,
                certificate_pem=command.certificate_pem,
                cross_certificate_pem=command.cross_certificate_pem,
                by=command.by,
                at_us=command.at_us,
            )
        )
        return ApplyResult(ok=True)

    def retire(self, index: int, command: RetireCa) -> ApplyResult:
        under_way = rotation_in_progress(self._changes)
        if under_way is None:
            return refused(ErrorKind.FAILED_PRECONDITION, "no CA rotation is under way")
        if command.fingerprint == under_way.fingerprint:
            return refused(ErrorKind.INVALID, "the CA that signs now cannot be retired")
        if any(c.retired and c.fingerprint == command.fingerprint for c in self._changes):
            return refused(ErrorKind.INVALID, f"CA {command.fingerprint[:16]}... was retired")
        if len(command.fingerprint) != 64 or not all(
            char in "0123456789abcdef" for char in command.fingerprint
        ):
            return refused(ErrorKind.INVALID, "a CA fingerprint is 64 lowercase hex digits")
        self._changes.append(
            CaChange(
                index=index,
                fingerprint=command.fingerprint,
                retired=True,
                certificate_pem=b"",
                cross_certificate_pem=b"",
                by=command.by,
                at_us=command.at_us,
            )
        )
        return ApplyResult(ok=True)

    def messages(self) -> list[trust_pb2.CaChange]:
        return [ca_change_message(change) for change in self._changes]

    @classmethod
    def from_messages(cls, messages: list[trust_pb2.CaChange]) -> CaRotationTable:
        """The table a snapshot holds.

        Raises:
            ControlSnapshotError: two steps with one index.
        """
        changes = sorted((ca_change_of(m) for m in messages), key=lambda change: change.index)
        if len({change.index for change in changes}) != len(changes):
            raise ControlSnapshotError("the snapshot holds a CA rotation step twice")
        return cls(changes)


def ca_change_message(change: CaChange) -> trust_pb2.CaChange:
    return trust_pb2.CaChange(
        index=change.index,
        fingerprint=change.fingerprint,
        retired=change.retired,
        certificate_pem=change.certificate_pem,
        cross_certificate_pem=change.cross_certificate_pem,
        by=change.by,
        at_us=change.at_us,
    )


def ca_change_of(message: trust_pb2.CaChange) -> CaChange:
    return CaChange(
        index=message.index,
        fingerprint=message.fingerprint,
        retired=message.retired,
        certificate_pem=bytes(message.certificate_pem),
        cross_certificate_pem=bytes(message.cross_certificate_pem),
        by=message.by,
        at_us=message.at_us,
    )


def _certificate_problem(command: AddTrustedCa) -> str | None:
    """Why the added CA (or its cross certificate) cannot be one; None when fine."""
    if (
        len(command.certificate_pem) > MAX_CERTIFICATE_BYTES
        or len(command.cross_certificate_pem) > MAX_CERTIFICATE_BYTES
    ):
        return "a CA certificate is at most 16 KiB"
    try:
        ca = x509.load_pem_x509_certificate(command.certificate_pem)
        cross = x509.load_pem_x509_certificate(command.cross_certificate_pem)
    except ValueError as exc:
        return f"not a certificate: {exc}"
    if not is_ca_certificate(ca) or ca.subject != ca.issuer:
        return "the added certificate is not a self-signed CA certificate"
    try:
        ca.verify_directly_issued_by(ca)
    except Exception:
        return "the added CA certificate's self-signature does not verify"
    if (
        cross.subject != ca.subject
        or cross.public_key() != ca.public_key()
        or not is_ca_certificate(cross)
    ):
        return "the cross certificate does not certify the added CA's name and key"
    return None
