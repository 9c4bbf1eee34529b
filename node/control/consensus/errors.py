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


class UpgradeRequiredError(Exception):
    """The state machine cannot apply what the log holds: a newer version wrote it (a
    command it does not know, an entry or snapshot of a higher protocol level).

    Raised by ``StateMachine.apply`` or ``restore`` *before* they change anything.
    The runner then stops applying the log (fail-stop: skipping the entry would leave
    this node's state apart from the others', silently) until the node runs a version
    that knows it; the message says what it met, for the node's status and logs.
    Not a NodeError: no caller ever sees it as an RPC's answer.
    """
