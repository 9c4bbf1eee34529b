"""Roles carried in certificates, and the rule for user and node names.

The role lives in the certificate subject's organizationalUnitName and the name in its
commonName, so that every node can authorise a caller from the TLS handshake alone,
without asking anyone.
"""

from __future__ import annotations

import enum
import re

from murmur.certs.errors import InvalidNameError

__all__ = ["NAME_PATTERN", "Role", "validate_name"]


class Role(enum.StrEnum):
    """What the holder of a certificate may do; stored as the subject's OU."""

    ADMIN = "admin"
    """Manages users, nodes and tokens, and may do anything a member may."""
    MEMBER = "member"
    """Submits and manages their own jobs and datasets."""
    VIEWER = "viewer"
    """Reads cluster state, jobs and logs; changes nothing."""
    NODE = "node"
    """A cluster node: serves TLS to clients and other nodes."""


NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
"""A name starts with a lowercase letter or digit, then up to 62 of [a-z0-9._-]."""


def validate_name(name: str) -> str:
    """Check that `name` may be used as a certificate's common name.

    The rule keeps names usable as file names, DNS labels of SANs and log fields
    without quoting.

    Args:
        name: the user or node name.

    Returns:
        `name`, unchanged.

    Raises:
        InvalidNameError: the name breaks the rule.
    """
    if NAME_PATTERN.fullmatch(name) is None:
        raise InvalidNameError(
            f"invalid name {name!r}: use 1 to 63 characters, lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return name
