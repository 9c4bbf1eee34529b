"""Errors of the consensus runner, as the node's error kinds (node/errors.py), so
the one status map gives them their gRPC codes: both are UNAVAILABLE, which tells
a client that retrying (elsewhere, or later) is the remedy."""

from __future__ import annotations

from murmur.node.errors import UnavailableError


class NotLeaderError(UnavailableError):
    """This node cannot commit: it does not lead. ``leader`` names the leader it
    knows of, if any, so the caller can forward there."""

    def __init__(self, leader: str | None, message: str) -> None:
        super().__init__(message if leader is None else f"{message}; the leader is {leader}")
        self.leader = leader


class ProposalTimeoutError(UnavailableError):
    """A proposal was neither committed nor lost in time: its fate is unknown."""
