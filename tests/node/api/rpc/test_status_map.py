"""Every domain error becomes a deliberate status code; anything else is INTERNAL."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest

from murmur import certs, storage
from murmur.node import errors
from murmur.node.api.rpc.status_map import status_for

_NOW = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.NotFoundError("no node named 'x'"), grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExistsError("taken"), grpc.StatusCode.ALREADY_EXISTS),
        (errors.InvalidArgumentError("bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.PermissionDeniedError("no"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.FailedPreconditionError("no CA"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.ResourceExhaustedError("full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.UnavailableError("later"), grpc.StatusCode.UNAVAILABLE),
        (errors.NotServedError("later part"), grpc.StatusCode.UNIMPLEMENTED),
        (storage.RecordNotFoundError("run", "r1"), grpc.StatusCode.NOT_FOUND),
        (storage.DatasetExistsError("imagenet"), grpc.StatusCode.ALREADY_EXISTS),
        (storage.TokenUsedError("t1", "node-2", _NOW), grpc.StatusCode.UNAUTHENTICATED),
        (storage.TokenExpiredError("t1", _NOW), grpc.StatusCode.UNAUTHENTICATED),
        (storage.TokenUnknownError("t1"), grpc.StatusCode.UNAUTHENTICATED),
        (certs.CsrError("garbled"), grpc.StatusCode.INVALID_ARGUMENT),
        (certs.InvalidNameError("Bad Name"), grpc.StatusCode.INVALID_ARGUMENT),
        (certs.IdentityError("no cert"), grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_domain_errors_map_to_their_codes_with_their_message(
    error: Exception, code: grpc.StatusCode
) -> None:
    assert status_for(error) == (code, str(error))


def test_a_bug_becomes_internal_with_an_incident_id_not_a_traceback() -> None:
    code, message = status_for(KeyError("secret internals"))
    assert code is grpc.StatusCode.INTERNAL
    assert "secret internals" not in message
    assert "incident" in message
