"""TrustService: the CA key handed to voters, renewals, relayed user certificates.

Only node certificates reach these methods (node/api/rpc/policy.py), and a revoked
one never does (the revocation interceptor runs first). Each call is audited on
this node with the calling node as the caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from murmur.node.agent.convert import ROLE_FROM_PROTO
from murmur.node.api.rpc.caller import current_caller
from murmur.node.errors import InvalidArgumentError, PermissionDeniedError
from murmur.node.identity.enrollment import Enrollment
from murmur.v1 import trust_pb2, trust_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class TrustServicer(trust_pb2_grpc.TrustServiceServicer):
    """Args:
    enrollment: signs with this node's CA, when it holds the key.
    is_voter: whether a node is a voter in this node's view of the election.
    """

    def __init__(
        self,
        *,
        enrollment: Enrollment,
        is_voter: Callable[[str], bool],
        start_rotation: Callable[[str], Awaitable[trust_pb2.CaChange]],
    ) -> None:
        self._enrollment = enrollment
        self._is_voter = is_voter
        self._start_rotation = start_rotation

    async def StartCaRotation(
        self, request: trust_pb2.StartCaRotationRequest, context: Context
    ) -> trust_pb2.StartCaRotationResponse:
        if self._enrollment.ca is None:
            # Never relay a relayed request on: one hop, to a holder.
            raise PermissionDeniedError("this node does not hold the lab CA key")
        added = await self._start_rotation(f"{request.requested_by} via {current_caller().name}")
        return trust_pb2.StartCaRotationResponse(added=added)

    async def FetchCaKey(
        self, request: trust_pb2.FetchCaKeyRequest, context: Context
    ) -> trust_pb2.FetchCaKeyResponse:
        caller = current_caller().name
        if not self._is_voter(caller):
            raise PermissionDeniedError(
                f"node {caller} is not a voter here; only voters hold the lab CA key"
            )
        ca = self._enrollment.ca
        if ca is None:
            raise PermissionDeniedError("this node does not hold the lab CA key")
        return trust_pb2.FetchCaKeyResponse(
            ca_key_pem=ca.private_key_pem(), ca_certificate_pem=ca.certificate_pem
        )

    async def RenewNodeCertificate(
        self, request: trust_pb2.RenewNodeCertificateRequest, context: Context
    ) -> trust_pb2.RenewNodeCertificateResponse:
        issued = await self._enrollment.renew_node_certificate(
            name=current_caller().name,
            csr_pem=request.csr_pem,
            addresses=list(request.addresses)[:8],
        )
        return trust_pb2.RenewNodeCertificateResponse(
            certificate_pem=issued.certificate_pem, ca_certificate_pem=issued.ca_certificate_pem
        )

    async def IssueUserCertificate(
        self, request: trust_pb2.RelayedUserCertificateRequest, context: Context
    ) -> trust_pb2.RelayedUserCertificateResponse:
        role = ROLE_FROM_PROTO.get(request.role)
        if role is None:
            raise InvalidArgumentError("role must be admin, member or viewer")
        if self._enrollment.ca is None:
            # Never relay a relayed request on: one hop, to a holder.
            raise PermissionDeniedError("this node does not hold the lab CA key")
        issued = await self._enrollment.issue_user_certificate(
            name=request.name,
            role=role,
            csr_pem=request.csr_pem,
            ttl_days=request.ttl_days,
            requested_by=f"{request.requested_by} via {current_caller().name}",
        )
        return trust_pb2.RelayedUserCertificateResponse(
            certificate_pem=issued.certificate_pem, ca_certificate_pem=issued.ca_certificate_pem
        )
