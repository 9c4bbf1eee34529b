"""The messages gossip nodes exchange, and the state updates they carry.

Two families:

- *updates* (:data:`Update`) say something about one member: it is alive (with
  its address and metadata), suspected, dead, or gone for good. They travel
  piggybacked on probes and in gossip rounds, and each is retransmitted a bounded
  number of times (:mod:`murmur.node.gossip.broadcasts`);
- *messages* (:data:`Message`) are what one node sends another: probes (Ping, Ack,
  PingReq, Nack), a gossip round (Gossip), and the three steps of a push-pull
  exchange: the requester's digest, the responder's newer states plus the names it
  wants, then the requester's states for those names. A digest is small (no
  addresses, no metadata) so that the full state of a member only crosses the
  wire when the other side lacks it.

Addresses are opaque strings (``host:port`` for the gRPC transport). Where a reply
is due, it goes to the sender's address, which the transport supplies.
"""

from __future__ import annotations

from dataclasses import dataclass

from murmur.node.gossip.member import MemberState


@dataclass(frozen=True, slots=True)
class Alive:
    """``name`` is alive at ``incarnation``, reachable at ``address``, with this
    metadata. Only the member itself creates these."""

    name: str
    incarnation: int
    address: str
    meta: bytes = b""
    meta_version: int = 0


@dataclass(frozen=True, slots=True)
class Suspect:
    """``accuser`` could not reach ``name`` at ``incarnation``."""

    name: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class Dead:
    """``accuser``'s suspicion of ``name`` at ``incarnation`` ran out."""

    name: str
    incarnation: int
    accuser: str


@dataclass(frozen=True, slots=True)
class Leave:
    """``name`` left the cluster on purpose (graceful shutdown or removal)."""

    name: str
    incarnation: int


Update = Alive | Suspect | Dead | Leave


@dataclass(frozen=True, slots=True)
class Ping:
    """Are you ``target``? Answered with an Ack of the same ``seq``."""

    seq: int
    target: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    """Answer to the Ping (or, relayed, the PingReq) numbered ``seq``."""

    seq: int
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class PingReq:
    """Please ping ``target`` at ``target_address`` for me and relay its Ack; send a
    Nack if it does not answer in time (Lifeguard), so I learn that you are working."""

    seq: int
    target: str
    target_address: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Nack:
    """The relay of PingReq ``seq`` heard nothing back from the target."""

    seq: int


@dataclass(frozen=True, slots=True)
class Gossip:
    """A gossip round: news only."""

    updates: tuple[Update, ...]


@dataclass(frozen=True, slots=True)
class DigestEntry:
    """What a push-pull digest says about one member: enough to tell who is newer."""

    name: str
    incarnation: int
    state: MemberState
    meta_version: int
    meta_incarnation: int


@dataclass(frozen=True, slots=True)
class FullState:
    """Everything about one member, sent when the other side's digest is older."""

    name: str
    address: str
    incarnation: int
    state: MemberState
    meta: bytes
    meta_version: int
    meta_incarnation: int


@dataclass(frozen=True, slots=True)
class PushPullRequest:
    """Step 1 of anti-entropy: my digest, plus full states I push unasked (on join:
    myself, so that the responder starts telling others at once)."""

    digest: tuple[DigestEntry, ...]
    states: tuple[FullState, ...] = ()
    join: bool = False


@dataclass(frozen=True, slots=True)
class PushPullResponse:
    """Step 2: the states I have that are newer than your digest, and the names
    whose state you have newer than mine."""

    states: tuple[FullState, ...]
    wanted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PushPullStates:
    """Step 3: the states the responder asked for."""

    states: tuple[FullState, ...]


Message = Ping | Ack | PingReq | Nack | Gossip | PushPullRequest | PushPullResponse | PushPullStates


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message the state machine wants sent to ``destination`` (an address)."""

    destination: str
    message: Message
