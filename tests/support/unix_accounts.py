"""Real Unix accounts for tests of jobs that run as their owner.

Creating an account needs root and ``useradd``; without them the tests that use
one skip with the reason (CI runs as root). Each account gets a fresh name and is
deleted when its test ends.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from murmur.node.agent.runtimes.base import RunAccount

ACCOUNT_PREFIX = "mt-"
"""Test accounts' names start here: a leftover one is easy to tell apart."""


def can_create_accounts() -> str | None:
    """Why accounts cannot be created here, or ``None`` when they can."""
    if os.geteuid() != 0:
        return "creating Unix accounts needs root"
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        return "creating Unix accounts needs useradd and userdel"
    return None


@contextlib.contextmanager
def unix_account(name: str | None = None) -> Iterator[RunAccount]:
    """A new account (own group, no home directory, no password) while in the block."""
    why_not = can_create_accounts()
    if why_not is not None:
        pytest.skip(why_not)
    name = name or f"{ACCOUNT_PREFIX}{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--no-create-home", "--user-group", "--shell", "/bin/sh", name],
        check=True,
        capture_output=True,
    )
    try:
        entry = pwd.getpwnam(name)
        yield RunAccount(
            name=name,
            uid=entry.pw_uid,
            gid=entry.pw_gid,
            groups=(entry.pw_gid,),
            home=entry.pw_dir,
        )
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


@contextlib.contextmanager
def reachable_directory() -> Iterator[Path]:
    """A new directory that other accounts may pass through (0711), directly under
    the system's temp dir (1777), removed afterwards. pytest's own base temp dir is
    private to the user running the tests (0700, reset by every session), so a job's
    account could not reach anything below it by path."""
    path = Path(tempfile.mkdtemp(prefix="murmur-test-"))
    try:
        path.chmod(0o711)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
