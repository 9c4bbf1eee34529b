"""The lab CA key, sealed to the voters: no single node holds the keys to the cluster.

`murmur ca init` writes the key on the first node. Every node that becomes a Raft
voter fetches it from a voter that holds it (``TrustService.FetchCaKey`` over
mutual TLS; the holder answers only a caller its own view counts as a voter), checks
that the certificate that comes with it is the very CA this node already trusts (its
fingerprint), and keeps it in ``<data dir>/ca/``, encrypted with the operator's
passphrase when one is set (``MURMUR_CA_PASSPHRASE`` or
``MURMUR_CA_PASSPHRASE_FILE``). From then on it signs joins, renewals and user
certificates, and opens the join listener. A node that stops voting keeps the key:
the set of holders is every node that has been a voter (docs/operations.md, "The CA").
After a CA rotation starts (node/trust_anchors.py) a holder of the old key drops it
and fetches the new one the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from murmur.certs import (
    CertificateAuthority,
    CertificateError,
    certificate_fingerprint,
    load_certificate,
)

_log = logging.getLogger("murmur.node.identity")

CA_PASSPHRASE_ENV = "MURMUR_CA_PASSPHRASE"
"""The passphrase ``ca/ca.key`` is encrypted with (for ``ca init`` and the node). An
operator secret, not a setting: it is never read from a configuration file."""


def ca_passphrase(
    passphrase_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> bytes | None:
    """The operator's CA passphrase: ``$MURMUR_CA_PASSPHRASE``, else the first line of
    ``passphrase_file`` (the node's ``ca_passphrase_file``, ``ca init
    --passphrase-file``), else None (the key is kept in the clear).

    Raises:
        CertificateError: the passphrase file cannot be read, or is empty.
    """
    env = os.environ if environ is None else environ
    direct = env.get(CA_PASSPHRASE_ENV, "")
    if direct:
        return direct.encode("utf-8")
    if passphrase_file is None:
        return None
    try:
        lines = passphrase_file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CertificateError(
            f"cannot read the CA passphrase file {passphrase_file}: {exc.strerror or exc}"
        ) from None
    if not lines or not lines[0]:
        raise CertificateError(f"the CA passphrase file {passphrase_file} is empty")
    return lines[0].encode("utf-8")


def load_ca(directory: Path, passphrase: bytes | None) -> CertificateAuthority | None:
    """The CA in ``directory`` (None when it holds none), re-written encrypted when a
    passphrase is set and the key is still in the clear.

    Raises:
        CertificateError: the key is encrypted and no (or the wrong) passphrase is set,
            or the files are corrupt.
    """
    if not CertificateAuthority.exists(directory):
        return None
    if CertificateAuthority.key_is_encrypted(directory) and not passphrase:
        raise CertificateError(
            f"the lab CA key in {directory} is encrypted: set {CA_PASSPHRASE_ENV} to its "
            "passphrase, or ca_passphrase_file to a file holding it"
        )
    ca = CertificateAuthority.load(directory, passphrase=passphrase)
    if passphrase and not CertificateAuthority.key_is_encrypted(directory):
        ca.write(directory, passphrase=passphrase)
    return ca


KeyFetcher = Callable[[str], Awaitable[tuple[bytes, bytes]]]
"""Asks the node at an address for (CA key PEM, CA certificate PEM)."""


class CaCustody:
    """Brings the CA key to this node once it votes.

    Args:
        ca_dir: where the key is kept (``<data dir>/ca``).
        ca_fingerprint: the CA that signs now (it changes with a CA rotation); any
            other offered is refused.
        holds: whether this node holds the key now.
        is_voter: whether this node is a voter now.
        holders: addresses of nodes that may hold the key (those that say so first).
        fetch: asks one of them for it.
        adopt: takes the key into use (enrollment, join listener, gossip).
        passphrase: what the key is encrypted with at rest; None: in the clear.
        interval: how often to look (``ca_custody_interval_seconds``).
    """

    def __init__(
        self,
        *,
        ca_dir: Path,
        ca_fingerprint: Callable[[], str],
        holds: Callable[[], bool],
        is_voter: Callable[[], bool],
        holders: Callable[[], list[str]],
        fetch: KeyFetcher,
        adopt: Callable[[CertificateAuthority], Awaitable[None]],
        passphrase: bytes | None,
        interval: float,
    ) -> None:
        self._ca_dir = ca_dir
        self._fingerprint = ca_fingerprint
        self._holds = holds
        self._is_voter = is_voter
        self._holders = holders
        self._fetch = fetch
        self._adopt = adopt
        self._passphrase = passphrase
        self._interval = interval

    async def run(self) -> None:
        """Until cancelled: while this node votes without the key, fetch it."""
        while True:
            if not self._holds() and self._is_voter():
                await self.acquire_once()
            await asyncio.sleep(self._interval)

    async def acquire_once(self) -> bool:
        """Tries each possible holder once; True once the key is here and in use."""
        for address in self._holders():
            try:
                key_pem, certificate_pem = await self._fetch(address)
                ca = self._accept(key_pem, certificate_pem)
            except Exception as exc:  # one holder's failure: try the next
                _log.info(
                    "could not fetch the lab CA key from %s: %s",
                    address,
                    exc,
                    extra={"event": "ca.fetch_failed", "peer": address},
                )
                continue
            await asyncio.to_thread(ca.write, self._ca_dir, passphrase=self._passphrase)
            await self._adopt(ca)
            _log.info(
                "holding the lab CA key (fetched from %s, %s at rest)",
                address,
                "encrypted" if self._passphrase else "in the clear",
                extra={"event": "ca.key_received", "peer": address},
            )
            return True
        return False

    def _accept(self, key_pem: bytes, certificate_pem: bytes) -> CertificateAuthority:
        """The CA handed over, if it is the one this node trusts.

        Raises:
            CertificateError: another CA, or a key that does not belong to it.
        """
        offered = certificate_fingerprint(load_certificate(certificate_pem))
        wanted = self._fingerprint()
        if offered != wanted:
            raise CertificateError(
                f"offered a CA with fingerprint {offered[:16]}..., not the one that signs "
                f"in this cluster now ({wanted[:16]}...)"
            )
        return CertificateAuthority.from_pem(key_pem, certificate_pem)
