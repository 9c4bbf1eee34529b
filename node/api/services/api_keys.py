"""ClusterService's API key calls: ``CreateApiKey``, ``ListApiKeys``, ``RevokeApiKey``.

The node the client reached makes the key (node/control/queue/api_keys.py), commits
its id and hash through the leader, and answers with the whole key: the only copy
anyone keeps is the creator's. The audit trail names the key's name or id, never
the key (node/api/rpc/interceptors.py takes a request's ``name`` or ``id``).

Who may do what (node/api/rpc/policy.py lets viewers read only): a member creates
keys for themselves and lists and revokes their own; an admin lists and revokes
anyone's. A node asks on a user's behalf when it relays a listing to the leader: it
checked the user, so its ``owner`` is taken as it is.
"""

from __future__ import annotations

import logging
import time

from murmur.certs import CertificateIdentity, Role
from murmur.node.control.queue.api_keys import (
    KEY_ID_RE,
    create_error,
    new_key,
    parse_key,
    secret_sha256,
)
from murmur.node.control.queue.cluster_jobs import ClusterJobs
from murmur.node.control.queue.commands import CreateApiKey, RevokeApiKey
from murmur.node.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from murmur.v1 import apikeys_pb2

_log = logging.getLogger("murmur.apikeys")


class ApiKeyCalls:
    """What the API key RPCs do, on the node the client reached.

    Args:
        cluster_jobs: the control log's door (commits, and reads through the leader).
    """

    def __init__(self, *, cluster_jobs: ClusterJobs) -> None:
        self._cluster_jobs = cluster_jobs

    async def create(
        self, request: apikeys_pb2.CreateApiKeyRequest, *, caller: CertificateIdentity
    ) -> apikeys_pb2.CreateApiKeyResponse:
        """Makes a key for the caller and commits its hash.

        Raises:
            InvalidArgumentError: a bad name, model list, rpm or expiry.
            AlreadyExistsError: the caller has a key of that name.
            UnavailableError: no leader committed it; no key was made.
        """
        at_us = time.time_ns() // 1000
        key_id, secret, key = new_key()
        command = CreateApiKey(
            id=key_id,
            name=request.name,
            owner=caller.name,
            secret_sha256=secret_sha256(secret),
            models=tuple(request.models),
            rpm=request.rpm,
            expires_at_us=_expires_at_us(request),
            at_us=at_us,
        )
        error = create_error(command)
        if error is not None:
            raise InvalidArgumentError(error)
        await self._cluster_jobs.commit(command)
        _log.info(
            "API key %s (%s) created for %s", key_id, command.name, caller.name,
            extra={"event": "apikey.created", "key_id": key_id, "user": caller.name},
        )  # fmt: skip
        created = apikeys_pb2.ApiKey(
            id=key_id, name=command.name, owner=caller.name, models=command.models,
            rpm=command.rpm, usage=apikeys_pb2.ApiKeyUsage(),
        )  # fmt: skip
        created.created_at.FromMicroseconds(at_us)
        if command.expires_at_us:
            created.expires_at.FromMicroseconds(command.expires_at_us)
        return apikeys_pb2.CreateApiKeyResponse(api_key=created, key=key)

    async def listing(
        self, request: apikeys_pb2.ListApiKeysRequest, *, caller: CertificateIdentity
    ) -> apikeys_pb2.ListApiKeysResponse:
        """The keys the caller may see: their own; an admin's or a node's, ``owner``'s
        (everyone's when empty).

        Raises:
            PermissionDeniedError: a member or viewer asked for someone else's keys.
        """
        return await self._cluster_jobs.api_keys(_owner_asked(request.owner, caller))

    async def revoke(
        self, request: apikeys_pb2.RevokeApiKeyRequest, *, caller: CertificateIdentity
    ) -> apikeys_pb2.ApiKey:
        """Revokes one key (by id, or by name among the owner's keys); answers it as
        it is now.

        Raises:
            InvalidArgumentError: neither or both of id and name.
            NotFoundError: no such key.
            PermissionDeniedError: not the caller's key, and the caller is no admin.
            UnavailableError: no leader committed it.
        """
        if bool(request.id) == bool(request.name):
            raise InvalidArgumentError("name the key to revoke by its id or by its name")
        key_id = request.id
        parsed = parse_key(key_id)
        if parsed is not None:  # a whole key pasted: its id, and the secret goes no further
            key_id = parsed[0]
        if key_id and not KEY_ID_RE.fullmatch(key_id):  # not echoed: it may be part of a key
            raise InvalidArgumentError("an API key's id is 12 lowercase hex digits")
        if request.name:
            owner = _owner_asked(request.owner, caller) or caller.name
            listing = await self._cluster_jobs.api_keys(owner)
            named = [k for k in listing.api_keys if k.name == request.name]
            live = [k for k in named if not k.HasField("revoked_at")]
            if not named:
                raise NotFoundError(f"{owner} has no API key named {request.name[:64]!r}")
            key_id = (live or named)[-1].id
        elif caller.role is not Role.ADMIN:
            owner = caller.name
        else:
            owner = ""
        await self._cluster_jobs.commit(
            RevokeApiKey(
                id=key_id, by=caller.name, is_admin=caller.role is Role.ADMIN,
                at_us=time.time_ns() // 1000,
            )
        )  # fmt: skip
        _log.info(
            "API key %s revoked by %s", key_id, caller.name,
            extra={"event": "apikey.revoked", "key_id": key_id, "user": caller.name},
        )  # fmt: skip
        for key in (await self._cluster_jobs.api_keys(owner)).api_keys:
            if key.id == key_id:
                return key
        raise NotFoundError(f"API key {key_id} was forgotten meanwhile")


def _owner_asked(owner: str, caller: CertificateIdentity) -> str:
    """Whose keys a listing may show: a member's or viewer's own only; an admin or
    a node (relaying a user it checked) as asked, empty meaning everyone's.

    Raises:
        PermissionDeniedError: a member or viewer named someone else.
    """
    if caller.role in (Role.ADMIN, Role.NODE):
        return owner
    if owner and owner != caller.name:
        raise PermissionDeniedError("only an admin may see another user's API keys")
    return caller.name


def _expires_at_us(request: apikeys_pb2.CreateApiKeyRequest) -> int:
    """The request's expiry in microseconds; 0 when unset.

    Raises:
        InvalidArgumentError: not a time (a Timestamp outside the years 1 to 9999).
    """
    if not request.HasField("expires_at"):
        return 0
    try:
        return int(request.expires_at.ToMicroseconds())
    except ValueError as exc:
        raise InvalidArgumentError(f"expires_at is not a valid time: {exc}") from None
