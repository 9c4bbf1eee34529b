"""Gossip membership on a live node: the gRPC transport, the runner, the node's blob.

:mod:`murmur.node.gossip` is the pure SWIM+Lifeguard state machine; this package runs it
for real: :class:`PeerTransport` carries its messages as
``NodeService.Gossip`` calls over mutual TLS, :class:`MembershipRunner` drives it on
the monotonic clock, and :mod:`.node_meta` turns this node's ``NodeInfo`` into the
metadata blob every member gossips about itself.
"""

from murmur.node.membership.errors import (
    MemberNotDownError,
    MemberNotFoundError,
    MembershipConfigError,
    MembershipError,
    NodeMetaTooLargeError,
    TransportClosedError,
)
from murmur.node.membership.node_meta import MAX_META_BYTES, TRIM_ORDER, decode_meta, encode_meta
from murmur.node.membership.runner import (
    GRPC_PIGGYBACK_BYTES,
    MIN_PIGGYBACK_BYTES,
    ClusterMember,
    GossipTransport,
    MembershipChange,
    MembershipRunner,
    MembershipStats,
)
from murmur.node.membership.transport import PeerTransport, SendOutcome, classify_error

__all__ = [
    "GRPC_PIGGYBACK_BYTES",
    "MAX_META_BYTES",
    "MIN_PIGGYBACK_BYTES",
    "TRIM_ORDER",
    "ClusterMember",
    "GossipTransport",
    "MemberNotDownError",
    "MemberNotFoundError",
    "MembershipChange",
    "MembershipConfigError",
    "MembershipError",
    "MembershipRunner",
    "MembershipStats",
    "NodeMetaTooLargeError",
    "PeerTransport",
    "SendOutcome",
    "TransportClosedError",
    "classify_error",
    "decode_meta",
    "encode_meta",
]
