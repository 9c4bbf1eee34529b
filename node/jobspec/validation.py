"""The one place a job spec is validated, with errors precise enough to act on.

Everything a user can put in a :class:`JobSpec` is checked here before the
job is accepted, so nothing downstream (scheduler, runtimes, store) has to
second-guess it. Each error names the field and what would be accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath

from murmur.node.errors import InvalidArgumentError
from murmur.v1 import types_pb2

MAX_GPUS = 64
MAX_NODES = 256
MAX_RETRIES = 100
MAX_PRIORITY = 1000
MAX_TIME_LIMIT = timedelta(days=30)
MAX_ARGS = 4096
MAX_ARG_BYTES = 128 * 1024
MAX_ENV = 1024
MAX_LABELS = 64
DEFAULT_QUEUE = "default"

_QUEUE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,255}$")
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")
# A docker image reference: [registry[:port]/]path[:tag][@digest], lowercase path.
_IMAGE_RE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)


@dataclass(frozen=True)
class ValidatedJob:
    """A spec that passed validation, with defaults filled in."""

    spec: types_pb2.JobSpec
    time_limit: timedelta | None


def _fail(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(message)


def _check_text(value: str, field: str, *, limit: int) -> None:
    if len(value.encode("utf-8")) > limit:
        raise _fail(f"{field} is longer than {limit} bytes")
    if "\x00" in value:
        raise _fail(f"{field} contains a NUL character")


def _check_path(value: str, field: str, roots: Collection[PurePosixPath]) -> None:
    _check_text(value, field, limit=4096)
    path = PurePosixPath(value)
    if not path.is_absolute():
        raise _fail(f"{field} must be an absolute path, got {value!r}")
    if ".." in path.parts:
        raise _fail(f"{field} must not contain '..', got {value!r}")
    if roots and not any(path == root or root in path.parents for root in roots):
        allowed = ", ".join(str(r) for r in sorted(roots))
        raise _fail(f"{field} {value!r} is outside the allowed roots ({allowed})")


def validate_job_spec(
    spec: types_pb2.JobSpec,
    *,
    known_datasets: Collection[str],
    path_roots: Collection[PurePosixPath] = (),
) -> ValidatedJob:
    """Checks ``spec`` and returns a copy with defaults filled in.

    Args:
        spec: as submitted.
        known_datasets: names of datasets the cluster knows.
        path_roots: where working dirs and environments may live; empty: anywhere absolute.

    Raises:
        InvalidArgumentError: the first problem found, naming the field.
    """
    result = types_pb2.JobSpec()
    result.CopyFrom(spec)

    if not result.command:
        raise _fail("command is empty: give the program and its arguments after `--`")
    if len(result.command) > MAX_ARGS:
        raise _fail(f"command has more than {MAX_ARGS} arguments")
    for index, argument in enumerate(result.command):
        _check_text(argument, f"command[{index}]", limit=MAX_ARG_BYTES)
    if not result.command[0]:
        raise _fail("command[0] (the program) is empty")
    if result.shell and len(result.command) != 1:
        raise _fail("with shell, command must be a single string (the shell script)")

    if result.runtime == types_pb2.JOB_RUNTIME_UNSPECIFIED:
        result.runtime = (
            types_pb2.JOB_RUNTIME_DOCKER if result.image else types_pb2.JOB_RUNTIME_PROCESS
        )
    if result.runtime == types_pb2.JOB_RUNTIME_DOCKER:
        if not result.image:
            raise _fail("the docker runtime needs an image (--image)")
        if not _IMAGE_RE.match(result.image) or len(result.image) > 255:
            raise _fail(f"image {result.image!r} is not a valid image reference")
        if result.venv or result.conda_env:
            raise _fail("venv and conda_env apply to the process runtime, not docker")
    elif result.runtime == types_pb2.JOB_RUNTIME_PROCESS:
        if result.image:
            raise _fail("image applies to the docker runtime; drop it or use --image alone")
        if result.venv and result.conda_env:
            raise _fail("give a venv or a conda env, not both")
        if result.venv:
            _check_path(result.venv, "venv", path_roots)
        if result.conda_env:
            _check_path(result.conda_env, "conda_env", path_roots)
    else:
        raise _fail(f"unknown runtime {result.runtime}")

    if result.workdir:
        _check_path(result.workdir, "workdir", path_roots)

    if len(result.env) > MAX_ENV:
        raise _fail(f"more than {MAX_ENV} environment variables")
    for key, value in result.env.items():
        if not _ENV_KEY_RE.match(key):
            raise _fail(f"environment variable name {key!r} is invalid (letters, digits, _)")
        if key.startswith("MURMUR_") or key == "CUDA_VISIBLE_DEVICES":
            raise _fail(f"environment variable {key} is set by murmur and cannot be overridden")
        _check_text(value, f"env {key}", limit=MAX_ARG_BYTES)

    if result.gpus.count > MAX_GPUS:
        raise _fail(f"gpus must be between 0 and {MAX_GPUS}, got {result.gpus.count}")
    _check_text(result.gpus.model, "gpu model", limit=128)
    if result.gpus.share and result.gpus.count == 0:
        raise _fail("gpu share needs at least one GPU")
    if not math.isfinite(result.cpus) or result.cpus < 0 or result.cpus > 4096:
        raise _fail(f"cpus must be between 0 and 4096, got {result.cpus}")

    for name in result.datasets:
        if name not in known_datasets:
            raise _fail(f"unknown dataset {name!r}: `murmur dataset list` shows what exists")
    if len(set(result.datasets)) != len(result.datasets):
        raise _fail("a dataset is listed twice")

    time_limit = None
    if result.HasField("time_limit"):
        time_limit = result.time_limit.ToTimedelta()
        if time_limit <= timedelta(0) or time_limit > MAX_TIME_LIMIT:
            raise _fail(f"time limit must be between 1s and {MAX_TIME_LIMIT.days} days")

    if result.retries > MAX_RETRIES:
        raise _fail(f"retries must be at most {MAX_RETRIES}")
    if result.nodes == 0:
        result.nodes = 1
    if result.nodes > MAX_NODES:
        raise _fail(f"nodes must be at most {MAX_NODES}")
    if abs(result.priority) > MAX_PRIORITY:
        raise _fail(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")

    result.queue = result.queue or DEFAULT_QUEUE
    if not _QUEUE_RE.match(result.queue):
        raise _fail(f"queue {result.queue!r} is invalid (lowercase letters, digits, . _ -)")
    _check_text(result.name, "name", limit=256)
    if any(ord(c) < 32 for c in result.name):
        raise _fail("name contains control characters")

    if len(result.labels) > MAX_LABELS:
        raise _fail(f"more than {MAX_LABELS} labels")
    for key, value in result.labels.items():
        if not _LABEL_KEY_RE.match(key):
            raise _fail(f"label key {key!r} is invalid")
        _check_text(value, f"label {key}", limit=256)
    return ValidatedJob(spec=result, time_limit=time_limit)
