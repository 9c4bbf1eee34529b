"""User certificates the lab CA issued, in the replicated control state.

The CA key signs wherever a holder runs, and a certificate, once handed to its
user, is known to nobody else: without a record, "who may call this cluster?" has
no answer but the audit trail's calls. So the node that signs a user certificate
commits what it signed (``RecordUserCertificate``: name, role, serial, validity,
the admin who asked), and ``murmur user list`` reads it from any node's replica.
The key is never in it: it is made on the user's machine and sent nowhere.

Certificates issued before this record existed (control protocol 6) are not here;
revocations are kept apart (``ControlState.revocations``) and joined in at read time.
Pure, like the rest of the state: a certificate's times are its own, never a clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from murmur.certs import InvalidNameError, validate_name
from murmur.node.control.queue.codec import ControlSnapshotError
from murmur.node.control.queue.commands import (
    RecordUserCertificate,
    user_certificate_from_message,
    user_certificate_to_message,
)
from murmur.node.control.queue.results import ApplyResult, ErrorKind, refused
from murmur.v1 import control_pb2, types_pb2

USER_ROLES = frozenset({types_pb2.ROLE_ADMIN, types_pb2.ROLE_MEMBER, types_pb2.ROLE_VIEWER})

_SERIAL = re.compile(r"[0-9a-f]{1,40}")


@dataclass(frozen=True, slots=True)
class IssuedUserCertificate:
    """One recorded certificate and the log index of its entry."""

    index: int
    certificate: RecordUserCertificate


class UserCertificateTable:
    """Every user certificate recorded, in log order; one per serial."""

    def __init__(self, entries: Iterable[IssuedUserCertificate] = ()) -> None:
        self._entries: list[IssuedUserCertificate] = []
        self._serials: set[str] = set()
        for entry in entries:
            self._entries.append(entry)
            self._serials.add(entry.certificate.serial)

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, index: int, command: RecordUserCertificate) -> ApplyResult:
        """Adds the certificate. The same serial again (a commit retried after a lost
        answer) changes nothing and succeeds."""
        problem = _problem(command)
        if problem is not None:
            return refused(ErrorKind.INVALID, problem)
        if command.serial in self._serials:
            return ApplyResult(ok=True)
        self._entries.append(IssuedUserCertificate(index, command))
        self._serials.add(command.serial)
        return ApplyResult(ok=True)

    def entries(self) -> list[IssuedUserCertificate]:
        """Every recorded certificate, in log (issue) order."""
        return list(self._entries)

    def messages(self) -> list[control_pb2.ControlUserCertificate]:
        return [
            control_pb2.ControlUserCertificate(
                certificate=user_certificate_to_message(entry.certificate), index=entry.index
            )
            for entry in self._entries
        ]

    @classmethod
    def from_messages(
        cls, messages: Iterable[control_pb2.ControlUserCertificate]
    ) -> UserCertificateTable:
        """A snapshot's table.

        Raises:
            ControlSnapshotError: a serial or an entry index twice.
        """
        entries = sorted(
            (
                IssuedUserCertificate(m.index, user_certificate_from_message(m.certificate))
                for m in messages
            ),
            key=lambda entry: entry.index,
        )
        if len({e.index for e in entries}) != len(entries) or len(
            {e.certificate.serial for e in entries}
        ) != len(entries):
            raise ControlSnapshotError("the snapshot holds a user certificate twice")
        return cls(entries)


def _problem(command: RecordUserCertificate) -> str | None:
    try:
        validate_name(command.name)
    except InvalidNameError as exc:
        return f"cannot record a certificate for {command.name!r}: {exc}"
    if command.role not in USER_ROLES:
        return f"a user certificate's role is admin, member or viewer, not {command.role}"
    if not _SERIAL.fullmatch(command.serial):
        return f"serial {command.serial!r} is not lowercase hex"
    if command.not_after_us <= command.not_before_us:
        return "a certificate must expire after it starts"
    return None
