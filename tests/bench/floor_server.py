"""The floor for RPC latency: a bare grpc.aio server with mTLS and the health service.

No interceptors, no store, nothing of murmur's but the certificates, run as its
own process like a node. ``python -m tests.bench.floor_server IDENTITY HOST:PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from murmur.certs import IdentityBundle


async def serve(identity: Path, address: str) -> None:
    bundle = IdentityBundle.read(identity)
    server = grpc.aio.server()
    servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_secure_port(
        address,
        grpc.ssl_server_credentials(
            [(bundle.key_pem, bundle.certificate_pem)],
            root_certificates=bundle.ca_certificate_pem,
            require_client_auth=True,
        ),
    )
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]), sys.argv[2]))
