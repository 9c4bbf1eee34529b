"""Who may see what of a job: private by default.

A job's environment values and its output (its runs' logs) are its owner's (the
job's ``user``, the name in the submitter's certificate) and the admins'. Anyone
else allowed to read jobs (members, viewers) sees the rest (state, resources,
node, reasons, events, argv, labels) and the env's names, each value replaced by
:data:`REDACTED`, and is refused the logs.

Nodes see what the owner sees: a node calls on a user's behalf (a read forwarded
to the leader, a log stream relayed to the run's node), and the node the user
reached applies this rule to the answer. Secret values (``JobSpec.secrets``)
are shown to nobody: answers carry their names only
(:func:`~murmur.node.jobspec.secrets.without_secret_values`).
"""

from __future__ import annotations

from murmur.certs import CertificateIdentity, Role
from murmur.node.errors import PermissionDeniedError
from murmur.node.jobspec.secrets import without_secret_values
from murmur.v1 import types_pb2

REDACTED = "<redacted>"
"""What an env value reads as to a caller who may not see it."""


def sees_private_parts(caller: CertificateIdentity, owner: str) -> bool:
    """Whether ``caller`` may read the env values and output of a job of ``owner``."""
    if caller.role in (Role.ADMIN, Role.NODE):
        return True
    return bool(owner) and caller.name == owner


def visible_job(job: types_pb2.Job, caller: CertificateIdentity) -> types_pb2.Job:
    """``job`` as ``caller`` may see it: never a secret's value, and env values only
    for :func:`sees_private_parts`. Returns ``job`` itself when nothing is hidden."""
    spec = without_secret_values(job.spec)
    redact = bool(spec.env) and not sees_private_parts(caller, job.user)
    if spec is job.spec and not redact:
        return job
    shown = types_pb2.Job()
    shown.CopyFrom(job)
    shown.spec.CopyFrom(spec)
    if redact:
        # Over a copy of the names: assigning into a protobuf map while iterating
        # it may skip entries (seen: one value of two left in the clear).
        for name in list(shown.spec.env):
            shown.spec.env[name] = REDACTED
    return shown


def check_may_read_output(caller: CertificateIdentity, job: types_pb2.Job) -> None:
    """Raises unless ``caller`` may read ``job``'s logs.

    Raises:
        PermissionDeniedError: ``caller`` is neither the job's owner, an admin nor a node.
    """
    if not sees_private_parts(caller, job.user):
        raise PermissionDeniedError(
            f"job {job.id} belongs to {job.user}: only they and admins may read its logs"
        )
