"""The CA keys of a rotation, on a holder's disk (node/trust_anchors.py).

``murmur ca rotate start`` reaches a node that holds the signing CA's key. It makes
the successor (a new key, the same name: ``CertificateAuthority.successor``) and the
cross certificate, and writes the successor to ``<data dir>/ca/next/<fingerprint>/``
*before* it commits ``AddTrustedCa``: once the command is in the log the new CA must
not be lost to a crash, or no node could sign again. Each attempt has its own
directory, so two starts racing on one holder cannot overwrite the key the log ends
up naming. When the command is applied (on this node: a moment later, or at its
next start) the successor takes the place of the old key in ``ca/``.

A holder that learns that another CA signs sets its old key aside in
``ca/previous/<fingerprint>/`` (it signs nothing more) and fetches the new one like
a new voter does (node/identity/ca_custody.py). The old key is deleted when its CA
is retired (``murmur ca rotate finish``), not before: until then a botched or forged
rotation can still be undone by hand from any holder's disk.
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
PREVIOUS_DIRECTORY = "previous"


class RotationKeys:
    """The rotation's CA keys on this holder's disk.

    Args:
        ca_dir: ``<data dir>/ca``.
        passphrase: what CA keys are encrypted with at rest; None: in the clear.
    """

    def __init__(self, ca_dir: Path, passphrase: bytes | None) -> None:
        self._ca_dir = ca_dir
        self._passphrase = passphrase

    def prepare(self, current: CertificateAuthority) -> tuple[CertificateAuthority, bytes]:
        """Makes the successor of ``current`` and keeps it in ``ca/next/<fp>/``;
        returns it with its cross certificate (blocking: call from a thread).

        Raises:
            CertificateError: the files cannot be written, or ``current`` expired.
        """
        successor = current.successor()
        cross = current.cross_sign(successor)
        successor.write(
            self._ca_dir / NEXT_DIRECTORY / successor.fingerprint, passphrase=self._passphrase
        )
        return successor, cross

    def pending(self, fingerprint: str) -> CertificateAuthority | None:
        """The successor kept for the CA of ``fingerprint``, if this holder made it."""
        try:
            return load_ca(self._ca_dir / NEXT_DIRECTORY / fingerprint, self._passphrase)
        except CertificateError as exc:
            _log.error(
                "cannot read the next CA key: %s", exc, extra={"event": "ca.next_unreadable"}
            )
            return None

    def promote(self, successor: CertificateAuthority) -> None:
        """The successor replaces the key in ``ca/`` (the old one was set aside)."""
        successor.write(self._ca_dir, passphrase=self._passphrase)
        shutil.rmtree(self._ca_dir / NEXT_DIRECTORY, ignore_errors=True)

    def set_aside(self, dropped: CertificateAuthority) -> None:
        """Moves the key of a CA that no longer signs to ``ca/previous/<fp>/``; it is
        deleted when that CA is retired (:meth:`forget_retired`)."""
        dropped.write(
            self._ca_dir / PREVIOUS_DIRECTORY / dropped.fingerprint, passphrase=self._passphrase
        )
        try:
            kept = CertificateAuthority.load(self._ca_dir, passphrase=self._passphrase)
        except CertificateError:
            kept = None
        if kept is not None and kept.fingerprint == dropped.fingerprint:
            (self._ca_dir / CA_KEY_FILE).unlink(missing_ok=True)
        _log.warning(
            "set aside the key of lab CA %s...: another CA signs now",
            dropped.fingerprint[:16],
            extra={"event": "ca.key_set_aside"},
        )

    def forget_retired(self, trusted: set[str]) -> None:
        """Deletes the set-aside keys of CAs no longer trusted (retired)."""
        previous = self._ca_dir / PREVIOUS_DIRECTORY
        if not previous.is_dir():
            return
        for entry in previous.iterdir():
            if entry.name not in trusted:
                shutil.rmtree(entry, ignore_errors=True)
                _log.warning(
                    "deleted the key of retired lab CA %s...",
                    entry.name[:16],
                    extra={"event": "ca.key_deleted"},
                )
