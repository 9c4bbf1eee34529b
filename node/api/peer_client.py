"""Calls from this node to another node's ``NodeService``, over mutual TLS.

Gossip has its own persistent channels (:mod:`murmur.node.membership.transport`); the
calls here are rare (an admin's drain of another node) and open a channel each.
"""

from __future__ import annotations

import grpc
import grpc.aio

from murmur.certs import IdentityBundle
from murmur.node.errors import PeerRefusedError, UnavailableError
from murmur.node.membership.transport import channel_options
from murmur.v1 import node_pb2, node_pb2_grpc, types_pb2

PEER_CALL_TIMEOUT_SECONDS = 10.0
DESCRIBE_TIMEOUT_SECONDS = 2.0


class PeerClient:
    """Makes NodeService calls with this node's identity."""

    def __init__(self, bundle: IdentityBundle) -> None:
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=bundle.ca_certificate_pem,
            private_key=bundle.key_pem,
            certificate_chain=bundle.certificate_chain_pem,
        )

    def use_identity(self, bundle: IdentityBundle) -> None:
        """Calls from now on present ``bundle`` (a renewed certificate)."""
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=bundle.ca_certificate_pem,
            private_key=bundle.key_pem,
            certificate_chain=bundle.certificate_chain_pem,
        )

    async def set_draining(
        self, address: str, *, node: str, draining: bool, requested_by: str
    ) -> types_pb2.NodeInfo:
        """Ask the node at ``address`` to drain or undrain itself.

        Raises:
            UnavailableError: the node did not answer, or refused; says which node.
            grpc.aio.AioRpcError: never; every failure becomes UnavailableError.
        """
        async with grpc.aio.secure_channel(address, self._credentials, channel_options()) as ch:
            stub = node_pb2_grpc.NodeServiceStub(ch)
            request = node_pb2.SetDrainingRequest(draining=draining, requested_by=requested_by)
            try:
                return await stub.SetDraining(request, timeout=PEER_CALL_TIMEOUT_SECONDS)
            except grpc.aio.AioRpcError as exc:
                raise UnavailableError(
                    f"node {node} at {address} did not take the drain: "
                    f"{exc.code().name.lower()}: {exc.details()}"
                ) from None

    async def remove_dataset(
        self, address: str, *, node: str, name: str, requested_by: str, is_admin: bool
    ) -> types_pb2.Dataset:
        """Ask the node at ``address`` to unregister its dataset ``name`` for a user.

        Raises:
            UnavailableError: the node did not answer; says which node.
            PeerRefusedError: it refused (not found, not theirs, mounted), with its code.
        """
        async with grpc.aio.secure_channel(address, self._credentials, channel_options()) as ch:
            stub = node_pb2_grpc.NodeServiceStub(ch)
            request = node_pb2.RelayedRemoveDatasetRequest(
                name=name, requested_by=requested_by, requested_by_admin=is_admin
            )
            try:
                return await stub.RemoveDataset(request, timeout=PEER_CALL_TIMEOUT_SECONDS)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.UNIMPLEMENTED,
                ):
                    raise UnavailableError(
                        f"node {node} at {address} did not take the removal: "
                        f"{exc.code().name.lower()}: {exc.details()}"
                    ) from None
                raise PeerRefusedError(exc.code(), f"node {node}: {exc.details()}") from None

    async def describe(self, address: str) -> types_pb2.NodeInfo | None:
        """The node's own, fresh NodeInfo (with the telemetry gossip leaves out), or
        ``None`` when it does not answer within :data:`DESCRIBE_TIMEOUT_SECONDS`."""
        async with grpc.aio.secure_channel(address, self._credentials, channel_options()) as ch:
            stub = node_pb2_grpc.NodeServiceStub(ch)
            try:
                return await stub.Describe(
                    node_pb2.DescribeRequest(), timeout=DESCRIBE_TIMEOUT_SECONDS
                )
            except grpc.aio.AioRpcError:
                return None
