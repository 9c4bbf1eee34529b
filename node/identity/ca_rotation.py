"""The CA keys of a rotation, on a holder's disk (node/trust_anchors.py).

``murmur ca rotate start`` reaches a node that holds the signing CA's key. It makes
the successor (a new key, the same name: ``CertificateAuthority.successor``) and the
cross certificate, and writes the successor to ``<data dir>/ca/next/`` *before* it
commits ``AddTrustedCa``: once the command is in the log the new CA must not be lost
to a crash, or no node could sign again until another rotation. When the command is
applied (on this node: a moment later, or at its next start) the successor takes the
place of the old key in ``ca/``; ``ca/next/`` of a command that never committed is
overwritten by the next attempt. Every other holder drops the old key from disk as
soon as it learns that another CA signs, and fetches the new one like a new voter
does (node/identity/ca_custody.py): after a rotation's start no disk keeps a key the
cluster no longer signs with.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from murmur.certs import CertificateAuthority, CertificateError
from murmur.certs.ca import CA_KEY_FILE
from murmur.node.identity.ca_custody import load_ca

_log = logging.getLogger("murmur.node.identity")

NEXT_DIRECTORY = "next"


class RotationKeys:
    """The successor CA's key between its making and its taking over.

    Args:
        ca_dir: ``<data dir>/ca``.
        passphrase: what CA keys are encrypted with at rest; None: in the clear.
    """

    def __init__(self, ca_dir: Path, passphrase: bytes | None) -> None:
        self._ca_dir = ca_dir
        self._passphrase = passphrase

    def prepare(self, current: CertificateAuthority) -> tuple[CertificateAuthority, bytes]:
        """Makes the successor of ``current`` and keeps it in ``ca/next/``; returns it
        with its cross certificate (blocking: call from a thread).

        Raises:
            CertificateError: the files cannot be written, or ``current`` expired.
        """
        successor = current.successor()
        cross = current.cross_sign(successor)
        next_dir = self._ca_dir / NEXT_DIRECTORY
        shutil.rmtree(next_dir, ignore_errors=True)
        successor.write(next_dir, passphrase=self._passphrase)
        return successor, cross

    def pending(self, fingerprint: str) -> CertificateAuthority | None:
        """The successor kept in ``ca/next/`` when it is the CA of ``fingerprint``."""
        try:
            successor = load_ca(self._ca_dir / NEXT_DIRECTORY, self._passphrase)
        except CertificateError as exc:
            _log.error(
                "cannot read the next CA key: %s", exc, extra={"event": "ca.next_unreadable"}
            )
            return None
        if successor is None or successor.fingerprint != fingerprint:
            return None
        return successor

    def promote(self, successor: CertificateAuthority) -> None:
        """The successor replaces the key in ``ca/``; ``ca/next/`` is removed."""
        successor.write(self._ca_dir, passphrase=self._passphrase)
        shutil.rmtree(self._ca_dir / NEXT_DIRECTORY, ignore_errors=True)

    def forget(self, dropped: CertificateAuthority) -> None:
        """Deletes the key of a CA that no longer signs (its certificate stays: the
        node may still trust it during the overlap)."""
        try:
            kept = CertificateAuthority.load(self._ca_dir, passphrase=self._passphrase)
        except CertificateError:
            kept = None
        if kept is not None and kept.fingerprint != dropped.fingerprint:
            return  # the successor took its place already
        (self._ca_dir / CA_KEY_FILE).unlink(missing_ok=True)
        _log.warning(
            "deleted the key of lab CA %s...: another CA signs now",
            dropped.fingerprint[:16],
            extra={"event": "ca.key_deleted"},
        )
