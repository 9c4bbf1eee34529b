"""The two gRPC listeners of a node.

* The API listener: mutual TLS, client certificate required and verified
  against the lab CA. Serves ClusterService, NodeService, health and
  reflection, behind the identity, status and audit interceptors.
* The join listener (on every node holding the CA key: the voters): TLS with no client
  certificate, serving JoinService alone. Its certificate chain includes the
  CA certificate, so a joining node can pin the CA by the token's fingerprint.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from murmur.certs import IdentityBundle, server_certificate_chain
from murmur.node.api.rpc.decoding import RequestDecodingInterceptor
from murmur.node.api.rpc.interceptors import (
    AuditInterceptor,
    AuditRecorder,
    AuthorizationInterceptor,
    IdentityInterceptor,
    StatusInterceptor,
)
from murmur.node.api.rpc.revocation import RevocationInterceptor
from murmur.node.api.services.cluster import ClusterServicer
from murmur.node.api.services.join import JoinServicer
from murmur.node.api.services.peer import PeerServicer
from murmur.node.api.services.trust import TrustServicer
from murmur.node.api.tls import ServerCertificates
from murmur.node.config import HostPort
from murmur.node.deny_list import DenyList
from murmur.node.errors import StartupError
from murmur.storage import Store
from murmur.v1 import cluster_pb2, cluster_pb2_grpc, node_pb2, node_pb2_grpc, trust_pb2_grpc

MAX_MESSAGE_BYTES = 32 * 1024 * 1024

_SERVER_OPTIONS = [
    # Accept client keepalive pings (clients ping every 30 s) without GOAWAY.
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]

SERVICE_NAMES = (
    cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"].full_name,
    node_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


def _bind(server: grpc.aio.Server, address: HostPort, credentials: grpc.ServerCredentials) -> int:
    try:
        port = server.add_secure_port(str(address), credentials)
    except RuntimeError as exc:
        raise StartupError(f"cannot listen on {address}: {exc} (is the port in use?)") from None
    if port == 0:
        raise StartupError(f"cannot listen on {address} (is the port in use?)")
    return port


def build_api_server(
    *,
    listen: HostPort,
    bundle: IdentityBundle,
    store: Store,
    node_name: str,
    cluster: ClusterServicer,
    peer: PeerServicer,
    health_servicer: HealthServicer,
    deny_list: DenyList | None = None,
    audit_recorder: AuditRecorder | None = None,
    trust: TrustServicer | None = None,
    certificates: ServerCertificates | None = None,
) -> grpc.aio.Server:
    # Revoked certificates are refused right after the caller is known (and their
    # open streams ended): node/api/rpc/revocation.py.
    revocation = [RevocationInterceptor(deny_list)] if deny_list is not None else []
    server = grpc.aio.server(
        interceptors=[
            IdentityInterceptor(),
            *revocation,
            StatusInterceptor(),
            RequestDecodingInterceptor(),
            AuditInterceptor(store, node_name, recorder=audit_recorder),
            AuthorizationInterceptor(),
        ],
        options=_SERVER_OPTIONS,
    )
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(cluster, server)
    node_pb2_grpc.add_NodeServiceServicer_to_server(peer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(SERVICE_NAMES, server)
    if trust is not None:
        trust_pb2_grpc.add_TrustServiceServicer_to_server(trust, server)
    # Renewed certificates are served from the next handshake on (node/api/tls.py).
    credentials = (
        certificates.api_credentials()
        if certificates is not None
        else grpc.ssl_server_credentials(
            [(bundle.key_pem, bundle.certificate_chain_pem)],
            root_certificates=bundle.ca_certificate_pem,
            require_client_auth=True,
        )
    )
    _bind(server, listen, credentials)
    return server


def build_join_server(
    *,
    listen: HostPort,
    bundle: IdentityBundle,
    join: JoinServicer,
    certificates: ServerCertificates | None = None,
) -> grpc.aio.Server:
    server = grpc.aio.server(
        interceptors=[StatusInterceptor(), RequestDecodingInterceptor()], options=_SERVER_OPTIONS
    )
    node_pb2_grpc.add_JoinServiceServicer_to_server(join, server)
    credentials = (
        certificates.join_credentials()
        if certificates is not None
        else grpc.ssl_server_credentials(
            [(bundle.key_pem, server_certificate_chain(bundle))], require_client_auth=False
        )
    )
    _bind(server, listen, credentials)
    return server
