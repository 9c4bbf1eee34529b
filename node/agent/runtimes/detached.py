"""Start a module of ours as a fresh interpreter in a session of its own: the way a
run's supervisor (without the fork server) and a container's lease guard start.

``posix_spawn``, not fork: the daemon runs gRPC, which must not be forked. The new
session (``setsid``) keeps it out of the daemon's process group, so a kill of the
daemon, or of its whole group, does not reach it. Its stdin is /dev/null and its
stdout and stderr go to ``log_path``; the environment is the minimum it needs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import murmur
from murmur._frozen import helper_command

PACKAGE_ROOT = Path(murmur.__file__).parent.parent
"""The folder that holds the ``murmur`` package: what the new interpreter imports our
code from (site-packages once installed; the repository, whose murmur/node links to
node/, in a checkout). Not this file's resolved path: that is node/ in a checkout."""


def spawn_module(
    python: str,
    flags: Sequence[str],
    module: str,
    args: Sequence[str],
    *,
    log_path: Path,
    inherit_fds: Sequence[tuple[int, int]] = (),
) -> int:
    """Starts ``python FLAGS -m MODULE ARGS`` (the frozen build: itself, told to be
    MODULE, :mod:`murmur._frozen`); returns its pid (the caller reaps it).

    Args:
        inherit_fds: (our fd, its fd) pairs to hand over besides stdio.

    Raises:
        OSError: it could not be started.
    """
    command = helper_command(module, args, python=python, flags=flags)
    return os.posix_spawnp(
        command[0],
        command,
        {
            "PATH": os.environ.get("PATH", os.defpath),
            "PYTHONPATH": str(PACKAGE_ROOT),
            "LANG": "C.UTF-8",
        },
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (
                os.POSIX_SPAWN_OPEN,
                1,
                str(log_path),
                os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                0o600,
            ),
            (os.POSIX_SPAWN_DUP2, 1, 2),
            *((os.POSIX_SPAWN_DUP2, ours, theirs) for ours, theirs in inherit_fds),
        ],
        setsid=True,
    )
