"""Domain errors raised by the daemon's services.

They describe what went wrong in the caller's terms; which gRPC status each
becomes is decided in one place, :mod:`murmur.node.api.rpc.status_map`. Services raise
these (or the errors of ``certs`` and ``storage``) and never touch status codes.

    NodeError
    ├── NotFoundError             the thing named does not exist
    ├── AlreadyExistsError        a name is taken
    ├── InvalidArgumentError      the request itself is wrong
    ├── PermissionDeniedError     the caller's role does not allow it
    ├── FailedPreconditionError   not possible in the current state (e.g. no CA here)
    │   └── UpgradeInProgressError  a node does not speak the control protocol it needs
    ├── ResourceExhaustedError    no capacity now
    ├── UnavailableError          a dependency is unreachable; try again
    ├── PeerRefusedError          the peer a request was forwarded to refused it (its code)
    └── NotServedError            an RPC of the contract this version does not serve yet
"""

from __future__ import annotations

import grpc


class NodeError(Exception):
    """Base of the daemon's domain errors. The message is shown to the caller."""


class NotFoundError(NodeError):
    pass


class AlreadyExistsError(NodeError):
    pass


class InvalidArgumentError(NodeError):
    pass


class PermissionDeniedError(NodeError):
    pass


class FailedPreconditionError(NodeError):
    pass


class UpgradeInProgressError(FailedPreconditionError):
    """The request needs a control protocol level that some node of the cluster does
    not speak yet (node/control/queue/protocol.py): it is refused rather than written
    to a log that node would read otherwise. Finishing the upgrade is the remedy."""


class ResourceExhaustedError(NodeError):
    pass


class UnavailableError(NodeError):
    pass


class PeerRefusedError(NodeError):
    """A peer this node forwarded the request to (the leader, or the node that runs
    a job) refused it: the caller gets the peer's status code and message as is."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class NotServedError(NodeError):
    """The contract defines the RPC ahead of the part of murmur that will serve it."""


class StartupError(Exception):
    """The node cannot start; the message is one line telling the operator what to do."""
