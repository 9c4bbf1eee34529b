"""Datasets read-only to a process job, as they are to a container.

A dataset belongs to whoever registered it, and a job often runs as that very
account: file permissions alone would let it change the data every other job reads.
Before it starts the job, the run's supervisor moves itself into a mount namespace
of its own and bind-mounts each dataset read-only over itself there; the job
inherits that namespace, so it sees the same paths, read-only, while the rest of
the node (other jobs included) is untouched. Mounts below a dataset (a dataset that
spans file systems) are bound along but keep their own write flag: only the
dataset's own mount is made read-only.

Needs CAP_SYS_ADMIN (a root daemon). A daemon that is not root runs every job as
itself and enforces nothing here (the supervisor writes so into the run's log); a
root daemon that fails to set the namespace up does not start the job (fail closed).

It imports only the standard library: the supervisor imports it.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000


def _libc() -> ctypes.CDLL:
    """The C library's functions, through the interpreter's own symbols (no search of
    the library path: ``ctypes.util.find_library`` would run ``ldconfig``)."""
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def make_read_only(paths: Sequence[str]) -> str:
    """Moves this process into a new mount namespace where every path of ``paths``
    is read-only. Returns ``""`` when done, or (not root) why nothing was enforced.

    Raises:
        OSError: root, and the namespace or a mount could not be made.
    """
    if not paths:
        return ""
    if os.geteuid() != 0:
        return "datasets are not read-only to this job: the daemon is not root"
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Our mounts must not propagate back to the node's namespace.
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    for path in paths:
        target = os.fsencode(path)
        _check(libc.mount(target, target, None, MS_BIND | MS_REC, None), f"bind {path}")
        _check(
            libc.mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None),
            f"remount {path} read-only",
        )
    return ""
