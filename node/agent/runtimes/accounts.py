"""Whose Unix account a run uses on this node, and whether that account may reach a path.

A job runs as its owner, never as root by accident. The owner is the certificate
name of the user who submitted it; the node maps that name to one of its own Unix
accounts (:class:`AccountPolicy`, from the node's configuration):

1. an explicit entry of ``job_accounts`` (certificate name → account), else
2. the account of the same name, else
3. ``job_fallback_account`` when the node sets one (a shared ``murmur-jobs``, say).

No account: the run is refused with the reason, never run as someone else. An
account with uid 0 is refused unless the node sets ``allow_root_jobs`` on purpose.
A daemon that is not root cannot switch accounts at all: it runs a job only when
the owner maps to the daemon's own account, and refuses the rest with a reason
(a personal demo cluster started by one user still just works).

Paths the run's process will use (its working dir, virtualenv, datasets) are
checked against the account's permissions before the run starts, so that a
forbidden one is a clear refusal rather than a job that dies on its first ``open``
— and so that the supervisor, which is root when it changes into the working dir,
lends the job no access of its own. The check reads POSIX mode bits (owner, group,
other); ACLs are not consulted, so an ACL that grants access is not seen.

Account lookups go through NSS (``/etc/passwd``, LDAP, SSSD): they may block, so
callers on the event loop run :meth:`AccountPolicy.resolve` in a thread.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from murmur.node.agent.runtimes.base import RunAccount, RuntimeStartError

__all__ = [
    "AccountPolicy",
    "AccountRefusedError",
    "RunAccount",
    "account_may_access",
    "require_access",
]


class AccountRefusedError(RuntimeStartError):
    """The run may not start under any account of this node; the message says why."""


Lookup = Callable[[str], pwd.struct_passwd]


def _group_list(name: str, gid: int) -> tuple[int, ...]:
    try:
        return tuple(sorted(set(os.getgrouplist(name, gid))))
    except OSError:
        return (gid,)


@dataclass(frozen=True)
class AccountPolicy:
    """How this node maps certificate names to its Unix accounts (see the module docstring)."""

    mapping: Mapping[str, str] = field(default_factory=dict)
    """Certificate name → account name, for users whose account is named otherwise."""
    fallback: str | None = None
    """The account of users with neither a mapping nor an account of their name."""
    allow_root: bool = False
    """Whether a job may run as uid 0 (a user mapped to root, or root as the fallback)."""
    daemon_uid: int = field(default_factory=os.geteuid)
    """The daemon's effective uid: only root can start a job as someone else."""
    lookup: Lookup = pwd.getpwnam
    groups_of: Callable[[str, int], tuple[int, ...]] = _group_list

    def resolve(self, user: str, *, node: str) -> RunAccount:
        """The account that runs ``user``'s jobs on ``node`` (this node).

        Raises:
            AccountRefusedError: no account may run it; the message names the user,
                the node and what an admin can do about it.
        """
        account = self._lookup_account(user, node=node)
        if account.is_root and not self.allow_root:
            raise AccountRefusedError(
                f"user {user!r} maps to root on node {node}, and jobs run as root only "
                "where the node sets allow_root_jobs = true"
            )
        if self.daemon_uid != 0 and account.uid != self.daemon_uid:
            daemon = _name_of_uid(self.daemon_uid)
            raise AccountRefusedError(
                f"the daemon on node {node} runs as {daemon!r}, not root, so it runs jobs "
                f"only as {daemon!r}; user {user!r} maps to account {account.name!r}"
            )
        return account

    def _lookup_account(self, user: str, *, node: str) -> RunAccount:
        mapped = self.mapping.get(user)
        if mapped is not None:
            found = self._find(mapped)
            if found is None:
                raise AccountRefusedError(
                    f"user {user!r} maps to account {mapped!r} (job_accounts), which does "
                    f"not exist on node {node}"
                )
            return found
        found = self._find(user)
        if found is not None:
            return found
        if self.fallback:
            found = self._find(self.fallback)
            if found is None:
                raise AccountRefusedError(
                    f"user {user!r} has no account on node {node}, and its fallback "
                    f"account {self.fallback!r} (job_fallback_account) does not exist"
                )
            return found
        raise AccountRefusedError(
            f"user {user!r} has no Unix account on node {node}: an admin creates one, "
            "maps the user to an account in [node.job_accounts], or sets job_fallback_account"
        )

    def _find(self, name: str) -> RunAccount | None:
        try:
            entry = self.lookup(name)
        except KeyError:
            return None
        return RunAccount(
            name=entry.pw_name,
            uid=entry.pw_uid,
            gid=entry.pw_gid,
            groups=self.groups_of(entry.pw_name, entry.pw_gid),
            home=entry.pw_dir,
        )


def _name_of_uid(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _allows(info: os.stat_result, account: RunAccount, want: int) -> bool:
    """Whether the mode bits of ``info`` grant ``want`` (a mask of R, W, X as 4, 2, 1)
    to ``account``: the owner's bits if it owns it, else the group's if it is in
    the group, else the others' (the kernel's order: no fall-through)."""
    if info.st_uid == account.uid:
        bits = (info.st_mode >> 6) & 7
    elif info.st_gid in account.groups:
        bits = (info.st_mode >> 3) & 7
    else:
        bits = info.st_mode & 7
    return bits & want == want


READ = 4
WRITE = 2
EXECUTE = 1


def account_may_access(path: Path, account: RunAccount, want: int) -> str | None:
    """Why ``account`` may not reach ``path`` with ``want`` (R/W/X bits), or ``None``.

    Walks the path from ``/``: every directory on the way must grant search (x), the
    last component ``want``. Symlinks are followed as the kernel would, and each
    directory they lead through is checked too.
    """
    if account.is_root:
        return None
    try:
        resolved = path.resolve(strict=True)
    except OSError as exc:
        return f"{path} cannot be reached: {exc.strerror or exc}"
    for parent in reversed(resolved.parents):
        try:
            info = os.stat(parent)
        except OSError as exc:
            return f"{parent} cannot be reached: {exc.strerror or exc}"
        if not _allows(info, account, EXECUTE):
            return f"account {account.name!r} may not enter {parent}"
    info = os.stat(resolved)
    if stat.S_ISDIR(info.st_mode) and want & READ:
        want |= EXECUTE  # reading a directory's files needs search too
    if not _allows(info, account, want):
        needed = "".join(c for c, bit in (("r", READ), ("w", WRITE), ("x", EXECUTE)) if want & bit)
        return f"account {account.name!r} lacks {needed} permission on {resolved}"
    return None


def require_access(path: Path, account: RunAccount | None, want: int, *, what: str) -> None:
    """Refuses the run unless ``account`` (``None``: the daemon's own) may reach ``path``.

    Raises:
        AccountRefusedError: naming ``what`` (``"working directory"``, ``"dataset x"``).
    """
    if account is None:
        return
    why = account_may_access(path, account, want)
    if why is not None:
        raise AccountRefusedError(f"{what}: {why}")
