"""The one place that maps errors to gRPC status codes.

Every exception a handler lets escape is translated here, so a client always
gets a deliberate code and a readable message, never ``UNKNOWN`` with a Python
traceback. Anything not listed is a bug: it becomes ``INTERNAL`` with an
incident id, and the traceback goes to the node's log under that id.
"""

from __future__ import annotations

import logging
import uuid

import grpc

from murmur import certs, storage
from murmur.node import errors
from murmur.node.membership import errors as membership_errors

_log = logging.getLogger("murmur.node.rpc")

# Ordered: the first matching class wins, so subclasses come before their bases.
_STATUS_BY_ERROR: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    # A node of the cluster runs an older murmur: not retryable until it is upgraded.
    (errors.UpgradeInProgressError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (errors.NotServedError, grpc.StatusCode.UNIMPLEMENTED),
    (membership_errors.MemberNotFoundError, grpc.StatusCode.NOT_FOUND),
    (membership_errors.MemberNotDownError, grpc.StatusCode.FAILED_PRECONDITION),
    (storage.RecordNotFoundError, grpc.StatusCode.NOT_FOUND),
    (storage.DatasetExistsError, grpc.StatusCode.ALREADY_EXISTS),
    # A bad join token is a failed proof of identity: the caller is not who it
    # claims to be. Unknown, used and expired tokens share the code; the
    # message says which, since the token holder already knows the token.
    (storage.TokenUnknownError, grpc.StatusCode.UNAUTHENTICATED),
    (storage.TokenUsedError, grpc.StatusCode.UNAUTHENTICATED),
    (storage.TokenExpiredError, grpc.StatusCode.UNAUTHENTICATED),
    (storage.StoreError, grpc.StatusCode.UNAVAILABLE),
    (certs.InvalidNameError, grpc.StatusCode.INVALID_ARGUMENT),
    (certs.CsrError, grpc.StatusCode.INVALID_ARGUMENT),
    (certs.IdentityError, grpc.StatusCode.UNAUTHENTICATED),
    (certs.CertificateError, grpc.StatusCode.FAILED_PRECONDITION),
    (NotImplementedError, grpc.StatusCode.UNIMPLEMENTED),
)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message a caller should see for ``exc``."""
    if isinstance(exc, errors.PeerRefusedError):
        return exc.code, str(exc)
    for error_type, code in _STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            if type(exc) is NotImplementedError:
                return code, "this RPC is not implemented by this version of murmur"
            return code, str(exc) or error_type.__name__
    incident = uuid.uuid4().hex[:12]
    _log.error("unexpected error in RPC handler", exc_info=exc, extra={"incident": incident})
    return grpc.StatusCode.INTERNAL, f"internal error on the node (incident {incident})"
