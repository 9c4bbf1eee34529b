"""Whose Unix account the test harness's jobs run as.

Nodes refuse to run a job as root, or as an account that does not exist, unless
their configuration says otherwise (:mod:`murmur.node.agent.runtimes.accounts`).
The suite's identities (``admin``, ``alice``...) have no Unix accounts here, so
every node the harness starts runs their jobs as the account that runs the tests
(the fallback account), with root allowed when that account is root, as an admin
of a single-user machine would configure it. Tests of the mapping itself start
their nodes with :data:`STRICT_NODE_ENV` instead.
"""

from __future__ import annotations

import getpass
import os

from murmur.node.agent.runtimes.accounts import AccountPolicy

TEST_ACCOUNT = getpass.getuser()
"""The Unix account that runs the test suite."""

RUNNING_AS_ROOT = os.geteuid() == 0

HARNESS_NODE_ENV = {
    "MURMUR_NODE_JOB_FALLBACK_ACCOUNT": TEST_ACCOUNT,
    "MURMUR_NODE_ALLOW_ROOT_JOBS": "true" if RUNNING_AS_ROOT else "false",
}
"""Node settings (as environment variables) that run every job as :data:`TEST_ACCOUNT`."""

STRICT_NODE_ENV = {
    "MURMUR_NODE_JOB_FALLBACK_ACCOUNT": "",
    "MURMUR_NODE_ALLOW_ROOT_JOBS": "false",
}
"""A node's defaults: jobs run as their owner's own account, or not at all."""


def harness_accounts() -> AccountPolicy:
    """The :data:`HARNESS_NODE_ENV` settings, for executors built in-process."""
    return AccountPolicy(fallback=TEST_ACCOUNT, allow_root=RUNNING_AS_ROOT)
