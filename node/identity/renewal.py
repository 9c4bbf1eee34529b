"""Node certificates renew themselves well before they expire.

Every ``check`` seconds the node looks at its certificate; once ``fraction`` of its
lifetime has passed (two thirds by default), it makes a new key and CSR, has a CA
holder sign it (itself when it holds the key, else a voter over mutual TLS:
``TrustService.RenewNodeCertificate``, which signs only for the caller's own name),
writes ``identity.pem`` atomically and hands the new bundle on: the listeners serve it
from the next handshake, new outgoing channels use it, and the connections already
open go on with the old one, still valid for a third of its life. During a CA
rotation (node/trust_anchors.py) a certificate of the old CA is renewed at once, from
a holder of the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from murmur.certs import (
    CertificateIdentity,
    IdentityBundle,
    generate_private_key,
    make_csr,
    private_key_pem,
)
from murmur.node.identity.enrollment import IssuedCertificate

_log = logging.getLogger("murmur.node.identity")

RETRY_SECONDS_MAX = 300.0
OUTDATED_RETRY_SECONDS = 2.0
"""How soon a certificate of a CA that no longer signs is tried again: the new CA's
key may not have reached any holder this node can reach yet."""
FIRST_CHECK_SECONDS = 30.0


def renewal_due_at(identity: CertificateIdentity, fraction: float) -> datetime:
    """When a certificate should be renewed: ``fraction`` into its lifetime."""
    return identity.not_before + (identity.not_after - identity.not_before) * fraction


Signer = Callable[[bytes, Sequence[str]], Awaitable[IssuedCertificate]]
"""Has a CSR signed for this node (with its addresses for the SANs)."""


class CertificateRenewer:
    """Renews this node's certificate in time.

    Args:
        identity_path: ``<data dir>/identity.pem``.
        current: the bundle in use now.
        signers: who may sign, in order of preference, each tried until one does
            (the local CA when held, then holders over mutual TLS).
        addresses: the node's addresses, for the SANs.
        on_renewed: takes the new bundle into use.
        fraction: renew once this fraction of the certificate's lifetime has passed
            (``cert_renew_fraction``).
        check_seconds: how often to look (``cert_renew_check_seconds``).
        outdated: whether the certificate must be renewed now whatever its age (its
            CA no longer signs: a rotation).
        finish: the new bundle with the CAs to trust and the intermediates to present;
            raises ValueError when the signer's CA is not the one that signs now.
    """

    def __init__(
        self,
        *,
        identity_path: Path,
        current: Callable[[], IdentityBundle],
        signers: Callable[[], Sequence[Signer]],
        addresses: Sequence[str],
        on_renewed: Callable[[IdentityBundle], Awaitable[None]],
        fraction: float,
        check_seconds: float,
        outdated: Callable[[], bool] = lambda: False,
        finish: Callable[[IdentityBundle], IdentityBundle] = lambda bundle: bundle,
    ) -> None:
        self._outdated = outdated
        self._failures = 0
        self._finish = finish
        self._wake = asyncio.Event()
        self._identity_path = identity_path
        self._current = current
        self._signers = signers
        self._addresses = list(addresses)
        self._on_renewed = on_renewed
        self._fraction = fraction
        self._check_seconds = check_seconds
        self.renewals = 0

    def due(self, now: datetime | None = None) -> bool:
        if self._outdated():
            return True
        moment = now or datetime.now(UTC)
        return moment >= renewal_due_at(self._current().identity, self._fraction)

    def wake(self) -> None:
        """Look again now (the CA that signs changed)."""
        self._wake.set()

    async def run(self) -> None:
        """Until cancelled: renew whenever due; a failure is retried at the next check.
        The first look comes after start-up settled (``FIRST_CHECK_SECONDS`` at most):
        the signer is another node, reached once gossip found it."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(self._check_seconds, FIRST_CHECK_SECONDS)):
                await self._wake.wait()
        while True:
            if self.due():
                try:
                    await self.renew_once()
                    self._failures = 0
                except Exception as exc:  # no holder reachable now: try again later
                    self._failures += 1
                    _log.warning(
                        "certificate renewal failed: %s",
                        exc,
                        extra={"event": "cert.renew_failed"},
                    )
            self._wake.clear()
            wait = min(self._check_seconds, RETRY_SECONDS_MAX)
            if self._outdated():
                # Soon, then backing off: a holder of the new key may come up in a
                # moment, or never (this node slept through the whole rotation).
                wait = min(wait, OUTDATED_RETRY_SECONDS * 2 ** min(self._failures, 8))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def renew_once(self) -> IdentityBundle:
        """Renews now.

        Raises:
            Exception: every signer refused or failed (the last one's error).
        """
        old = self._current()
        name = old.identity.name
        key = generate_private_key()
        csr = make_csr(key, name)
        failure: Exception | None = None
        for sign in self._signers():
            try:
                issued = await sign(csr, self._addresses)
            except Exception as exc:
                failure = exc
                continue
            try:
                bundle = self._finish(
                    IdentityBundle(
                        key_pem=private_key_pem(key),
                        certificate_pem=issued.certificate_pem,
                        ca_certificate_pem=old.ca_certificate_pem,
                    )
                )
            except ValueError as exc:
                failure = exc
                continue
            if bundle.identity.name != name:
                failure = ValueError(f"the signer certified {bundle.identity.name!r}, not {name!r}")
                continue
            await asyncio.to_thread(bundle.write, self._identity_path)
            await self._on_renewed(bundle)
            self.renewals += 1
            _log.info(
                "certificate renewed: valid until %s",
                bundle.identity.not_after.isoformat(),
                extra={"event": "cert.renewed", "serial": bundle.identity.serial},
            )
            return bundle
        raise failure or RuntimeError("no CA holder is known to sign the renewal")
