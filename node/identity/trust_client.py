"""This node's calls to other nodes' TrustService, with its current identity.

Rare calls (a new voter's key fetch, a renewal, a relayed user certificate), so
each opens its own channel, with the certificate the node holds at that moment:
after a renewal the next call presents the new one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import grpc
import grpc.aio

from murmur.certs import NODE_TLS_NAME, IdentityBundle, Role
from murmur.node.errors import PeerRefusedError, UnavailableError
from murmur.node.identity.enrollment import IssuedCertificate
from murmur.v1 import trust_pb2, trust_pb2_grpc, types_pb2

TRUST_CALL_TIMEOUT_SECONDS = 10.0

_Answer = TypeVar("_Answer")

if TYPE_CHECKING:
    from murmur.v1.trust_pb2_grpc import TrustServiceAsyncStub

_ROLE_TO_PROTO = {
    Role.ADMIN: types_pb2.ROLE_ADMIN,
    Role.MEMBER: types_pb2.ROLE_MEMBER,
    Role.VIEWER: types_pb2.ROLE_VIEWER,
}


_TRY_NEXT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.PERMISSION_DENIED,  # not a holder (any more)
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
"""Refusals that another holder may not give."""


class TrustClient:
    """Calls TrustService on other nodes as this node (``bundle`` is read per call)."""

    def __init__(self, bundle: Callable[[], IdentityBundle]) -> None:
        self._bundle = bundle

    def _channel(self, address: str) -> grpc.aio.Channel:
        bundle = self._bundle()
        credentials = grpc.ssl_channel_credentials(
            root_certificates=bundle.ca_certificate_pem,
            private_key=bundle.key_pem,
            certificate_chain=bundle.certificate_chain_pem,
        )
        return grpc.aio.secure_channel(
            address, credentials, options=[("grpc.ssl_target_name_override", NODE_TLS_NAME)]
        )

    async def fetch_ca_key(self, address: str) -> tuple[bytes, bytes]:
        """(CA key PEM, CA certificate PEM) from the holder at ``address``.

        Raises:
            grpc.aio.AioRpcError: refused or unreachable.
        """
        async with self._channel(address) as channel:
            response = await trust_pb2_grpc.TrustServiceStub(channel).FetchCaKey(
                trust_pb2.FetchCaKeyRequest(), timeout=TRUST_CALL_TIMEOUT_SECONDS
            )
        return bytes(response.ca_key_pem), bytes(response.ca_certificate_pem)

    async def renew(
        self, address: str, csr_pem: bytes, addresses: Sequence[str]
    ) -> IssuedCertificate:
        """This node's CSR signed by the holder at ``address``.

        Raises:
            grpc.aio.AioRpcError: refused or unreachable.
        """
        async with self._channel(address) as channel:
            response = await trust_pb2_grpc.TrustServiceStub(channel).RenewNodeCertificate(
                trust_pb2.RenewNodeCertificateRequest(csr_pem=csr_pem, addresses=list(addresses)),
                timeout=TRUST_CALL_TIMEOUT_SECONDS,
            )
        return IssuedCertificate(
            bytes(response.certificate_pem), bytes(response.ca_certificate_pem)
        )

    async def issue_user_certificate(
        self,
        addresses: Sequence[str],
        *,
        name: str,
        role: Role,
        csr_pem: bytes,
        ttl_days: int,
        requested_by: str,
    ) -> IssuedCertificate:
        """A user certificate signed by the first holder that answers.

        Raises:
            PeerRefusedError: a holder refused it (the caller sees its code and why).
            UnavailableError: no holder answered.
        """
        request = trust_pb2.RelayedUserCertificateRequest(
            name=name,
            role=_ROLE_TO_PROTO[role],
            csr_pem=csr_pem,
            ttl_days=ttl_days,
            requested_by=requested_by,
        )
        response: trust_pb2.RelayedUserCertificateResponse = await self._first_holder(
            addresses,
            lambda stub: stub.IssueUserCertificate(request, timeout=TRUST_CALL_TIMEOUT_SECONDS),
        )
        return IssuedCertificate(
            bytes(response.certificate_pem), bytes(response.ca_certificate_pem)
        )

    async def start_ca_rotation(
        self, addresses: Sequence[str], *, requested_by: str
    ) -> trust_pb2.CaChange:
        """Has the first holder of the signing CA's key that answers start a CA
        rotation (node/identity/ca_rotation.py).

        Raises:
            PeerRefusedError: a holder refused it.
            UnavailableError: no holder answered.
        """
        request = trust_pb2.StartCaRotationRequest(requested_by=requested_by)
        response: trust_pb2.StartCaRotationResponse = await self._first_holder(
            addresses,
            lambda stub: stub.StartCaRotation(request, timeout=TRUST_CALL_TIMEOUT_SECONDS),
        )
        return response.added

    async def _first_holder(
        self,
        addresses: Sequence[str],
        call: Callable[[TrustServiceAsyncStub], Awaitable[_Answer]],
    ) -> _Answer:
        """``call``'s answer from the first of ``addresses`` that gives one; a refusal
        that another holder may not give (``_TRY_NEXT``) moves on to the next."""
        failures: list[str] = []
        for address in addresses:
            async with self._channel(address) as channel:
                try:
                    return await call(trust_pb2_grpc.TrustServiceStub(channel))
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in _TRY_NEXT:
                        failures.append(f"{address}: {exc.details()}")
                        continue
                    raise PeerRefusedError(exc.code(), exc.details() or "") from None
        raise UnavailableError(
            "no node holding the lab CA key answered"
            + (f" ({'; '.join(failures)})" if failures else "; is a voter up?")
        )
