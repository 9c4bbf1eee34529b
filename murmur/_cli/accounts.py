"""The Unix account running the CLI: the first admin takes its name.

Jobs run as their owner's Unix account on every node
(:mod:`murmur.node.agent.runtimes.accounts`), found by the owner's certificate name:
an admin named after the account that ran ``murmur ca init`` or ``murmur up`` runs
jobs as that very account, with no mapping to write.
"""

from __future__ import annotations

import os
import pwd


def own_account_name() -> str:
    """The name of the effective uid's account (not ``$USER``, which ``sudo`` and
    ``su`` may leave pointing at someone else)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        return f"uid-{os.geteuid()}"


def running_as_root() -> bool:
    return os.geteuid() == 0
