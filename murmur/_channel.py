"""Opens the mutual-TLS gRPC channel from a client to a node."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio

from murmur._config import ConnectConfig

__all__ = ["MAX_MESSAGE_BYTES", "secure_channel"]

MAX_MESSAGE_BYTES = 32 * 1024 * 1024
"""Largest message sent or accepted; gRPC's 4 MiB default is too small for big listings."""

_KEEPALIVE_TIMEOUT_MS = 10_000
"""How long a keepalive ping may go unanswered before the connection counts as dead."""


def secure_channel(config: ConnectConfig) -> grpc.aio.Channel:
    """Opens a channel to `config.address` that presents and checks certificates.

    The node's certificate must be issued by the lab CA and carry
    `config.tls.server_name`; the address may be a bare IP address.

    Raises:
        RuntimeError: No event loop is running. A grpc.aio channel belongs to the loop it
            was made in (grpc issue 32480), so it must be made inside that loop.
    """
    asyncio.get_running_loop()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=config.tls.ca_certificate_pem,
        private_key=config.tls.key_pem,
        certificate_chain=config.tls.certificate_pem,
    )
    options: list[tuple[str, str | int]] = [
        ("grpc.ssl_target_name_override", config.tls.server_name),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    if config.keepalive_seconds > 0:
        options += [
            ("grpc.keepalive_time_ms", round(config.keepalive_seconds * 1000)),
            ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
            # A watch stream can be quiet for hours; without this the client stops
            # pinging after two pings that carried no data, and a dead node goes unseen.
            ("grpc.http2.max_pings_without_data", 0),
        ]
    return grpc.aio.secure_channel(config.address, credentials, options=options)
