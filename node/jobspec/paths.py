"""The one containment check for paths users give: datasets, working dirs, environments.

A path is accepted when it is absolute, free of ``..`` and NUL, and its real path
(every symlink resolved, as the kernel would when the job opens it) lies under one
of the configured roots. A symlink inside a root that points out of it is refused
like the path it points to; a path that does not exist yet is resolved as far as
it exists. Both sides use it: the node that takes a submission or a dataset, and
the node that starts the run, which resolves again on its own disk.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path, PurePosixPath

from murmur.node.errors import InvalidArgumentError
from murmur.v1 import types_pb2

MAX_PATH_BYTES = 4096
"""Longest path accepted (Linux's PATH_MAX)."""


def check_path_text(value: str, field: str) -> PurePosixPath:
    """``value`` as a path, if it could name a place in a root: absolute, no ``..``.

    Raises:
        InvalidArgumentError: empty, too long, NUL, relative, or with ``..``.
    """
    if not value:
        raise InvalidArgumentError(f"{field} is empty")
    if len(value.encode("utf-8", errors="surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidArgumentError(f"{field} is longer than {MAX_PATH_BYTES} bytes")
    if "\x00" in value:
        raise InvalidArgumentError(f"{field} contains a NUL character")
    path = PurePosixPath(value)
    if not path.is_absolute():
        raise InvalidArgumentError(f"{field} must be absolute, got {value!r}")
    if ".." in path.parts:
        raise InvalidArgumentError(f"{field} must not contain '..', got {value!r}")
    return path


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def contained_path(
    value: str,
    roots: Collection[os.PathLike[str] | str],
    *,
    field: str,
    roots_name: str = "the allowed roots",
    must_exist: bool = False,
) -> Path:
    """The real path of ``value`` if it lies under one of ``roots``, symlinks resolved.

    Args:
        value: as the user gave it.
        roots: where it may lie; empty: anywhere (the text checks still apply).
        field: the field's name, for messages.
        roots_name: what the roots are called in messages.
        must_exist: refuse a path that does not exist on this machine.

    Raises:
        InvalidArgumentError: a bad path text (see `check_path_text`), a missing path
            when ``must_exist``, or a real path outside every root.
    """
    check_path_text(value, field)
    real = Path(os.path.realpath(value))
    if must_exist and not real.exists():
        raise InvalidArgumentError(f"{field} {value} does not exist on this node")
    if not roots:
        return real
    for root in roots:
        if _is_within(real, Path(os.path.realpath(root))):
            return real
    allowed = ", ".join(str(root) for root in roots)
    resolved = f" resolves to {real}," if str(real) != os.path.normpath(value) else " is"
    raise InvalidArgumentError(f"{field} {value}{resolved} outside {roots_name} ({allowed})")


def check_job_paths(spec: types_pb2.JobSpec, roots: Collection[os.PathLike[str] | str]) -> None:
    """Checks the paths of ``spec`` that name places on this node's disk (a process
    run's working dir, virtualenv and conda env) against ``roots``, symlinks resolved
    here. A docker run's working dir is inside its container and is not checked.

    Raises:
        InvalidArgumentError: the first path outside the roots, naming its field.
    """
    fields = ["venv", "conda_env"]
    docker = spec.runtime == types_pb2.JOB_RUNTIME_DOCKER or (
        spec.runtime == types_pb2.JOB_RUNTIME_UNSPECIFIED and bool(spec.image)
    )
    if not docker:
        fields.append("workdir")
    for field in fields:
        value = getattr(spec, field)
        if value:
            contained_path(value, roots, field=field, roots_name="the job path roots")
