"""ClusterService's revocation calls: ``RevokeCertificate`` and ``ListRevocations``,
and the revocation that ``RemoveNode`` makes.

A revocation is committed to the control log through the leader (any node takes
the call) before the answer, so once ``murmur cert revoke`` returns, the voters
hold it; every node enforces it within seconds (node/control/revocation_sync.py)
and refuses the certificate on its next call (node/api/rpc/revocation.py).

Revoking a user cancels none of their jobs (an admin may want them to finish):
the answer lists the user's pending and running jobs, for the admin to cancel.

An admin cannot revoke the certificate they call with: that would lock them out
mid-call; another admin revokes it.
"""

from __future__ import annotations

import logging
import time

from murmur.certs import CertificateIdentity, InvalidNameError, validate_name
from murmur.node.control.queue.ca_rotations import ca_change_message
from murmur.node.control.queue.cluster_jobs import ClusterJobs
from murmur.node.control.queue.commands import RevokeCertificate
from murmur.node.control.revocation_sync import RevocationSync, revocation_message
from murmur.node.deny_list import normalize_serial
from murmur.node.errors import FailedPreconditionError, InvalidArgumentError, NodeError
from murmur.v1 import cluster_pb2, types_pb2

_log = logging.getLogger("murmur.revocations")

MAX_REASON_CHARS = 512
ACTIVE_JOBS_LISTED = 1000
"""At most this many of a revoked user's jobs are listed in the answer."""

_ACTIVE_STATES = (
    types_pb2.JOB_STATE_PENDING,
    types_pb2.JOB_STATE_SCHEDULED,
    types_pb2.JOB_STATE_STARTING,
    types_pb2.JOB_STATE_RUNNING,
)


def revocation_of_request(
    request: cluster_pb2.RevokeCertificateRequest, *, caller: CertificateIdentity, at_us: int
) -> RevokeCertificate:
    """The command a request asks for.

    Raises:
        InvalidArgumentError: neither or both of name and serial, a bad one, or a
            reason too long.
        FailedPreconditionError: the request names the caller's own certificate.
    """
    if bool(request.name) == bool(request.serial):
        raise InvalidArgumentError("name a user or node, or give a certificate serial (not both)")
    if len(request.reason) > MAX_REASON_CHARS:
        raise InvalidArgumentError(f"the reason is longer than {MAX_REASON_CHARS} characters")
    name = serial = ""
    if request.name:
        try:
            name = validate_name(request.name)
        except InvalidNameError as exc:
            raise InvalidArgumentError(str(exc)) from None
    else:
        try:
            serial = normalize_serial(request.serial)
        except ValueError:
            raise InvalidArgumentError(
                f"serial {request.serial!r} is not a hexadecimal number"
            ) from None
    if name == caller.name or serial == caller.serial:
        raise FailedPreconditionError(
            "that is the certificate you are calling with; another admin must revoke it"
        )
    return RevokeCertificate(
        name=name, serial=serial, reason=request.reason, by=caller.name, at_us=at_us
    )


class RevocationCalls:
    """What the revocation RPCs do, on the node the client reached.

    Args:
        sync: this node's deny list and how it learns it.
        cluster_jobs: the control log's door (commits) and the job queue (listings).
        node_name: this node.
    """

    def __init__(self, *, sync: RevocationSync, cluster_jobs: ClusterJobs, node_name: str) -> None:
        self._sync = sync
        self._cluster_jobs = cluster_jobs
        self._node_name = node_name

    async def revoke(
        self, request: cluster_pb2.RevokeCertificateRequest, *, caller: CertificateIdentity
    ) -> cluster_pb2.RevokeCertificateResponse:
        """Commits the revocation, then lists the revoked user's active jobs.

        Raises:
            InvalidArgumentError, FailedPreconditionError: see ``revocation_of_request``.
            UnavailableError: no leader committed it; nothing was revoked.
        """
        command = revocation_of_request(request, caller=caller, at_us=time.time_ns() // 1000)
        await self._commit(command)
        answer = cluster_pb2.RevokeCertificateResponse(
            target=command.name or f"serial:{command.serial}",
            active_jobs=await self._active_jobs(command.name) if command.name else [],
        )
        answer.revoked_at.FromMicroseconds(command.at_us)
        return answer

    async def revoke_node(self, name: str, *, by: str) -> None:
        """Revokes every certificate of a removed node (``murmur node remove``).

        Raises:
            UnavailableError: no leader committed it.
        """
        await self._commit(
            RevokeCertificate(
                name=name, serial="", reason="node removed", by=by, at_us=time.time_ns() // 1000
            )
        )

    def listing(self) -> cluster_pb2.ListRevocationsResponse:
        """The list this node enforces now."""
        deny_list = self._sync.deny_list
        return cluster_pb2.ListRevocationsResponse(
            revocations=[revocation_message(r) for r in deny_list.entries()],
            revision=self._sync.revision,
            answered_by=self._node_name,
            ca_changes=[ca_change_message(c) for c in self._sync.ca_changes.entries()],
        )

    async def _commit(self, command: RevokeCertificate) -> None:
        await self._cluster_jobs.commit(command)
        # A voter (the leader surely) applied it: enforce it here now, not a poll later.
        await self._sync.sync_once()

    async def _active_jobs(self, user: str) -> list[types_pb2.Job]:
        """The user's pending and running jobs; none when the queue cannot say now
        (the revocation stands: the admin lists them with ``murmur job list``)."""
        request = cluster_pb2.ListJobsRequest(
            user=user, states=_ACTIVE_STATES, limit=ACTIVE_JOBS_LISTED
        )
        try:
            return list((await self._cluster_jobs.list(request)).jobs)
        except NodeError as exc:
            _log.warning("could not list the jobs of revoked user %s: %s", user, exc)
            return []
