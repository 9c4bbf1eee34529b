"""What a refused or failed action says to the user: one line, never a traceback.

The node is the authority on roles (a member's drain comes back PERMISSION_DENIED
and lands in the node's audit log); this module turns its answer into the line
shown as a notification.
"""

from __future__ import annotations

from murmur import MurmurError, PermissionDenied, Unimplemented
from murmur.tui.format import role_name
from murmur.v1 import types_pb2

ROLE_RANK = {
    types_pb2.ROLE_UNSPECIFIED: 0,
    types_pb2.ROLE_VIEWER: 1,
    types_pb2.ROLE_MEMBER: 2,
    types_pb2.ROLE_ADMIN: 3,
    types_pb2.ROLE_NODE: 0,
}


def describe_failure(action: str, error: MurmurError) -> str:
    """`cancel job j-1 refused: ... (PERMISSION_DENIED)`: the action, the node's words, the code."""
    code = error.code.name if error.code is not None else "local"
    if isinstance(error, PermissionDenied):
        return f"{action} refused by the node: {error.message} ({code})"
    if isinstance(error, Unimplemented):
        return f"{action}: this node does not offer it yet: {error.message} ({code})"
    return f"{action} failed: {error.message} ({code})"


def role_warning(have: types_pb2.Role.ValueType, need: types_pb2.Role.ValueType) -> str:
    """A line for the confirmation dialog when the caller's role looks too low, else ''.

    Advice only: the node decides, so the action is still sent and its answer shown.
    """
    if ROLE_RANK.get(have, 0) >= ROLE_RANK[need]:
        return ""
    return (
        f"This needs the {role_name(need)} role and you are {role_name(have) or 'unknown'}: "
        "the node will most likely refuse."
    )


def cancel_warning(job: types_pb2.Job | None, identity: types_pb2.Identity | None) -> str:
    """Advice for cancelling `job`: a viewer may cancel nothing, a member only their own."""
    have = identity.role if identity is not None else types_pb2.ROLE_UNSPECIFIED
    warning = role_warning(have, types_pb2.ROLE_MEMBER)
    if warning or job is None or identity is None:
        return warning
    if job.user != identity.name and have != types_pb2.ROLE_ADMIN:
        return f"This is {job.user}'s job: only they or an admin may cancel it."
    return ""
