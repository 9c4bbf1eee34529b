"""JoinService: a new node trades a one-time token and a CSR for a certificate.

This servicer listens on the join port, which is TLS without client
certificates (the joining node has none yet); the token is its proof. It is
audited here, not by the interceptor, because there is no certificate to name
the caller: the audit names the node that asked to join.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import grpc

from murmur.certs import Role
from murmur.node.api.rpc.status_map import status_for
from murmur.node.identity.enrollment import Enrollment
from murmur.node.local_node import LocalNode
from murmur.storage import AuditEntry
from murmur.v1 import node_pb2, node_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class JoinServicer(node_pb2_grpc.JoinServiceServicer):
    def __init__(
        self,
        *,
        enrollment: Enrollment,
        record_audit: Callable[[AuditEntry], Awaitable[object]],
        local: LocalNode,
    ) -> None:
        """
        Args:
            record_audit: writes the join's audit entry (the cluster's audit trail:
                durable in this node's outbox when it returns, shipped at once).
        """
        self._enrollment = enrollment
        self._record_audit = record_audit
        self._local = local

    async def Join(self, request: node_pb2.JoinRequest, context: Context) -> node_pb2.JoinResponse:
        result, detail = "OK", ""
        try:
            issued = await self._enrollment.join(
                token_id=request.token_id,
                secret=request.secret,
                node_name=request.node_name,
                csr_pem=request.csr_pem,
                address=request.advertise_address,
            )
        except Exception as exc:
            code, detail = status_for(exc)
            result = code.name
            raise
        finally:
            await self._record_audit(
                AuditEntry(
                    time=datetime.now(UTC),
                    user=request.node_name[:63] or "?",
                    role=Role.NODE.value,
                    action="Join",
                    target=request.token_id[:64],
                    result=result,
                    detail=detail,
                )
            )
        return node_pb2.JoinResponse(
            certificate_pem=issued.certificate_pem,
            ca_certificate_pem=issued.ca_certificate_pem,
            issuer=self._local.describe(),
        )
