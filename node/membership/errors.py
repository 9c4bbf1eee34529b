"""Errors raised by the membership package (gossip over gRPC).

    MembershipError
    ├── MembershipConfigError    the runner cannot work with the settings it was given
    ├── NodeMetaTooLargeError    this node's facts do not fit in a gossip blob
    ├── MemberNotFoundError      an operator named a node gossip does not know
    ├── MemberNotDownError       an operator asked to remove a node that is not dead
    └── TransportClosedError     a send after the transport was closed

Nothing here is raised by what peers send: a message that cannot be used is
logged and dropped, the way a lost datagram would be.
"""

from __future__ import annotations


class MembershipError(Exception):
    """Base of the membership package's errors."""


class MembershipConfigError(MembershipError, ValueError):
    """A setting is out of range for gossip over gRPC; the message names it."""


class NodeMetaTooLargeError(MembershipError):
    """Even trimmed, the node's NodeInfo is over the gossip metadata limit."""


class MemberNotFoundError(MembershipError):
    """No member has the name an operator gave."""


class MemberNotDownError(MembershipError):
    """Only a dead member can be removed; the message says what to do instead."""


class TransportClosedError(MembershipError):
    """``send`` was called on a closed transport (a shutdown ordering bug)."""
