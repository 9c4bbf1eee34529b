"""Gossip membership: SWIM with Lifeguard, as a pure state machine.

:class:`Membership` is driven by time and messages and returns messages to send;
the daemon runs it over gRPC, :class:`Simulation` runs thousands of them on a
fake clock. Wire format: :mod:`murmur.node.gossip.codec`.
"""

from murmur.node.gossip.codec import decode, encode, encoded_size
from murmur.node.gossip.config import GossipConfig
from murmur.node.gossip.errors import GossipConfigError, GossipDecodeError, GossipError
from murmur.node.gossip.events import EventKind, MembershipEvent
from murmur.node.gossip.machine import Membership
from murmur.node.gossip.member import Member, MemberState
from murmur.node.gossip.messages import (
    Ack,
    Alive,
    Dead,
    DigestEntry,
    FullState,
    Gossip,
    Leave,
    Message,
    Nack,
    Outgoing,
    Ping,
    PingReq,
    PushPullRequest,
    PushPullResponse,
    PushPullStates,
    Suspect,
    Update,
)
from murmur.node.gossip.simulation import (
    LinkModel,
    Observation,
    SimulatedNetwork,
    Simulation,
    SimulationError,
    Traffic,
)

__all__ = [
    "Ack",
    "Alive",
    "Dead",
    "DigestEntry",
    "EventKind",
    "FullState",
    "Gossip",
    "GossipConfig",
    "GossipConfigError",
    "GossipDecodeError",
    "GossipError",
    "Leave",
    "LinkModel",
    "Member",
    "MemberState",
    "Membership",
    "MembershipEvent",
    "Message",
    "Nack",
    "Observation",
    "Outgoing",
    "Ping",
    "PingReq",
    "PushPullRequest",
    "PushPullResponse",
    "PushPullStates",
    "SimulatedNetwork",
    "Simulation",
    "SimulationError",
    "Suspect",
    "Traffic",
    "Update",
    "decode",
    "encode",
    "encoded_size",
]
