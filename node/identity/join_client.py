"""The joining side of enrollment: from a token to a signed node certificate.

1. Decode the token: the CA fingerprint, a token id and secret, the join port.
2. Fetch the CA certificate from the join listener and accept it only if its
   fingerprint matches the token's pin (trust on first use, pinned).
3. Generate a key locally, send a CSR with the token over TLS verified against
   that CA, and receive the certificate. The private key never leaves this node.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from murmur.certs import (
    NODE_TLS_NAME,
    CertificateError,
    IdentityBundle,
    JoinToken,
    fetch_pinned_ca_certificate,
    generate_private_key,
    make_csr,
    private_key_pem,
)
from murmur.node.config import HostPort
from murmur.node.errors import StartupError
from murmur.v1 import node_pb2, node_pb2_grpc

JOIN_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class JoinResult:
    bundle: IdentityBundle
    issuer_address: str
    """API address of the node that signed: the new node's first gossip seed."""


async def join_cluster(
    *, join: HostPort, token_text: str, node_name: str, advertise: HostPort
) -> JoinResult:
    """Obtains this node's identity from an existing node.

    Raises:
        StartupError: with one line saying why the join failed.
        certs.CertificateError: token malformed, CA pin mismatch, node unreachable.
    """
    token = JoinToken.decode(token_text)
    ca_pem = await asyncio.to_thread(
        fetch_pinned_ca_certificate, join.host, token.join_port, token.ca_fingerprint
    )
    key = generate_private_key()
    csr = make_csr(key, node_name)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    target = str(HostPort(join.host, token.join_port))
    async with grpc.aio.secure_channel(
        target, credentials, options=[("grpc.ssl_target_name_override", NODE_TLS_NAME)]
    ) as channel:
        stub = node_pb2_grpc.JoinServiceStub(channel)
        try:
            response = await stub.Join(
                node_pb2.JoinRequest(
                    token_id=token.token_id,
                    secret=token.secret,
                    node_name=node_name,
                    csr_pem=csr,
                    advertise_address=str(advertise),
                ),
                timeout=JOIN_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError as exc:
            raise StartupError(f"join via {target} refused: {exc.details()}") from None
    # The answer names every CA to trust (old and new during a CA rotation); the
    # pinned one must be among them and must have issued the certificate.
    try:
        bundle = IdentityBundle.parse(
            private_key_pem(key)
            + bytes(response.certificate_pem)
            + (bytes(response.ca_certificate_pem) or ca_pem),
            source=f"the answer of {target}",
        )
    except CertificateError as exc:
        raise StartupError(f"join via {target}: {exc}") from None
    if bundle.ca_fingerprint != token.ca_fingerprint:
        raise StartupError(f"join via {target}: the node answered with a different CA")
    return JoinResult(bundle, response.issuer.address)
