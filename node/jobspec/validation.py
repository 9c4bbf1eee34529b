"""The one place a job spec is validated, with errors precise enough to act on.

Everything a user can put in a :class:`JobSpec` is checked here before the
job is accepted, so nothing downstream (scheduler, runtimes, store) has to
second-guess it. Each error names the field and what would be accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath

from google.protobuf.message import Message

from murmur.node.errors import InvalidArgumentError
from murmur.node.jobspec.arrays import check_array, check_dependencies, check_project
from murmur.node.jobspec.paths import check_path_text, contained_path
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
# Caps on what one spec may carry (see docs/jobs-and-datasets.md, "Limits"): a spec is
# replicated to every voter and kept in every snapshot of the queue.
MAX_COMMAND_BYTES = 1024 * 1024
"""All of ``command`` together (Linux's ARG_MAX is 2 MiB, the environment included)."""
MAX_ENV_NAME_BYTES = 256
MAX_ENV_VALUE_BYTES = MAX_ARG_BYTES
MAX_ENV_BYTES = 1024 * 1024
"""All names and values of ``env`` together."""
MAX_LABEL_PREFIX_BYTES = 253
MAX_LABEL_NAME_BYTES = 63
MAX_LABEL_VALUE_BYTES = 63
MAX_NAME_BYTES = 256
MAX_IMAGE_BYTES = 255
MAX_GPU_MODEL_BYTES = 128
MAX_DATASETS = 64
MAX_DATASET_NAME_BYTES = 63
MAX_IDEMPOTENCY_KEY_BYTES = 128
MAX_REASON_BYTES = 1024
MAX_MEMORY_BYTES = 2**50

_QUEUE_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,255}$")
# Label syntax as Kubernetes has it: a key is [prefix/]name, the prefix a DNS subdomain,
# the name (and a non-empty value) alphanumeric at both ends with - _ . inside.
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_LABEL_PREFIX_RE = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$"
)
_RESERVED_LABEL_PREFIXES = ("murmur.", "murmur/")
"""Keys murmur sets itself (``murmur.node``, ``murmur.run_id`` on containers)."""
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
    # Resolved on this node's disk; the node that starts the run resolves it again.
    contained_path(value, sorted(roots), field=field, roots_name="the job path roots")


# ------------------------------------------------------------------ limits


def _shown(value: str, limit: int = 64) -> str:
    """``value`` quoted for a message, cut short: a refusal must not echo a megabyte."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _refuse_nul(message: Message, path: str) -> None:
    """Refuses a NUL character in any string of ``message``, nested ones included."""
    for field, value in message.ListFields():
        name = f"{path}.{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if (isinstance(key, str) and "\x00" in key) or (
                    isinstance(item, str) and "\x00" in item
                ):
                    raise _fail(f"{name} contains a NUL character (key {_shown(key)})")
        elif field.type == field.TYPE_STRING:
            items = value if field.is_repeated else [value]
            for index, item in enumerate(items):
                if "\x00" in item:
                    where = f"{name}[{index}]" if field.is_repeated else name
                    raise _fail(f"{where} contains a NUL character")
        elif field.type == field.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                _refuse_nul(item, name)


def _check_command(command: Sequence[str]) -> None:
    if not command:
        raise _fail("command is empty: give the program and its arguments after `--`")
    if len(command) > MAX_ARGS:
        raise _fail(f"command has more than {MAX_ARGS} arguments ({len(command)})")
    total = 0
    for index, argument in enumerate(command):
        _check_text(argument, f"command[{index}]", limit=MAX_ARG_BYTES)
        total += len(argument.encode("utf-8")) + 1
    if total > MAX_COMMAND_BYTES:
        raise _fail(f"command is longer than {MAX_COMMAND_BYTES} bytes in all ({total})")
    if not command[0]:
        raise _fail("command[0] (the program) is empty")


def check_env_name(name: str, what: str = "environment variable") -> None:
    """Refuses a name a process environment cannot hold, or one murmur sets itself.

    Raises:
        InvalidArgumentError: empty, too long, ``=``/NUL or another character than
            letters, digits and ``_``, a leading digit, or ``MURMUR_*``/``CUDA_VISIBLE_DEVICES``.
    """
    if not name:
        raise _fail(f"{what} name is empty")
    if len(name.encode("utf-8")) > MAX_ENV_NAME_BYTES:
        raise _fail(f"{what} name {_shown(name)} is longer than {MAX_ENV_NAME_BYTES} bytes")
    if not _ENV_KEY_RE.match(name):
        raise _fail(
            f"{what} name {_shown(name)} is invalid: letters, digits and _, "
            "not starting with a digit"
        )
    if name.startswith("MURMUR_") or name == "CUDA_VISIBLE_DEVICES":
        raise _fail(f"{what} {name} is set by murmur and cannot be overridden")


def _check_env(env: Mapping[str, str]) -> None:
    if len(env) > MAX_ENV:
        raise _fail(f"env has more than {MAX_ENV} variables ({len(env)})")
    total = 0
    for name, value in env.items():
        check_env_name(name)
        _check_text(value, f"env {name}", limit=MAX_ENV_VALUE_BYTES)
        total += len(name) + len(value.encode("utf-8")) + 2
    if total > MAX_ENV_BYTES:
        raise _fail(f"env is larger than {MAX_ENV_BYTES} bytes in all ({total})")


def check_label(key: str, value: str) -> None:
    """Refuses a label that is not in Kubernetes label syntax, or a key murmur reserves.

    Raises:
        InvalidArgumentError: naming the key and the rule it breaks.
    """
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        raise _fail(f"label key {_shown(key)} has an empty prefix before '/'")
    if prefix and (len(prefix) > MAX_LABEL_PREFIX_BYTES or not _LABEL_PREFIX_RE.match(prefix)):
        raise _fail(
            f"label key prefix {_shown(prefix)} is invalid: a DNS subdomain (lowercase "
            f"letters, digits, '-', '.'), at most {MAX_LABEL_PREFIX_BYTES} characters"
        )
    if len(name) > MAX_LABEL_NAME_BYTES or not _LABEL_NAME_RE.match(name):
        raise _fail(
            f"label key {_shown(key)} is invalid: at most {MAX_LABEL_NAME_BYTES} letters, "
            "digits, '-', '_', '.', starting and ending with a letter or digit "
            "(an optional DNS prefix and '/' before)"
        )
    if key.lower().startswith(_RESERVED_LABEL_PREFIXES):
        raise _fail(f"label key {_shown(key)} is reserved: murmur.* keys are set by murmur")
    if value and (len(value) > MAX_LABEL_VALUE_BYTES or not _LABEL_NAME_RE.match(value)):
        raise _fail(
            f"label {_shown(key)} has an invalid value {_shown(value)}: empty, or at most "
            f"{MAX_LABEL_VALUE_BYTES} letters, digits, '-', '_', '.', starting and ending "
            "with a letter or digit"
        )


def _check_labels(labels: Mapping[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise _fail(f"labels has more than {MAX_LABELS} entries ({len(labels)})")
    for key, value in labels.items():
        check_label(key, value)


def _check_dataset_names(names: Sequence[str]) -> None:
    if len(names) > MAX_DATASETS:
        raise _fail(f"datasets has more than {MAX_DATASETS} entries ({len(names)})")
    for index, name in enumerate(names):
        if not name:
            raise _fail(f"datasets[{index}] is empty")
        _check_text(name, f"datasets[{index}]", limit=MAX_DATASET_NAME_BYTES)


def check_idempotency_key(key: str) -> None:
    """Refuses a submission's idempotency key that is too long or not printable text.

    Raises:
        InvalidArgumentError: over `MAX_IDEMPOTENCY_KEY_BYTES`, or control characters.
    """
    _check_text(key, "idempotency_key", limit=MAX_IDEMPOTENCY_KEY_BYTES)
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise _fail("idempotency_key contains control characters")


def check_reason(reason: str, field: str = "reason") -> None:
    """Refuses a free-text reason (a cancel's) longer than `MAX_REASON_BYTES` or with NUL.

    Raises:
        InvalidArgumentError: naming ``field`` and the limit.
    """
    _check_text(reason, field, limit=MAX_REASON_BYTES)


def validate_job_spec(
    spec: types_pb2.JobSpec,
    *,
    known_datasets: Collection[str],
    path_roots: Collection[PurePosixPath] = (),
    batch_size: int = 0,
) -> ValidatedJob:
    """Checks ``spec`` and returns a copy with defaults filled in.

    Args:
        spec: as submitted.
        known_datasets: names of datasets the cluster knows.
        path_roots: where working dirs and environments may live; empty: anywhere absolute.
        batch_size: the jobs of the batch it is submitted in (its dependencies may
            name them as ``@N``); 0: submitted alone.

    Raises:
        InvalidArgumentError: the first problem found, naming the field.
    """
    result = types_pb2.JobSpec()
    result.CopyFrom(spec)

    _refuse_nul(result, "spec")
    if result.HasField("replica_of"):
        raise _fail("replica_of is set by the cluster on a service's replicas: create a service")
    _check_command(result.command)
    if result.shell and len(result.command) != 1:
        raise _fail("with shell, command must be a single string (the shell script)")

    if result.runtime == types_pb2.JOB_RUNTIME_UNSPECIFIED:
        result.runtime = (
            types_pb2.JOB_RUNTIME_DOCKER if result.image else types_pb2.JOB_RUNTIME_PROCESS
        )
    if result.runtime == types_pb2.JOB_RUNTIME_DOCKER:
        if not result.image:
            raise _fail("the docker runtime needs an image (--image)")
        _check_text(result.image, "image", limit=MAX_IMAGE_BYTES)
        if not _IMAGE_RE.match(result.image):
            raise _fail(f"image {_shown(result.image)} is not a valid image reference")
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

    if result.workdir and result.runtime == types_pb2.JOB_RUNTIME_DOCKER:
        check_path_text(result.workdir, "workdir")  # in the container, not on the node
    elif result.workdir:
        _check_path(result.workdir, "workdir", path_roots)

    _check_env(result.env)

    if result.gpus.count > MAX_GPUS:
        raise _fail(f"gpus must be between 0 and {MAX_GPUS}, got {result.gpus.count}")
    _check_text(result.gpus.model, "gpu model", limit=MAX_GPU_MODEL_BYTES)
    if result.gpus.share and result.gpus.count == 0:
        raise _fail("gpu share needs at least one GPU")
    if not math.isfinite(result.cpus) or result.cpus < 0 or result.cpus > 4096:
        raise _fail(f"cpus must be between 0 and 4096, got {result.cpus}")
    if result.memory_bytes > MAX_MEMORY_BYTES:
        raise _fail(f"memory_bytes must be at most {MAX_MEMORY_BYTES} (1 PiB)")

    _check_dataset_names(result.datasets)
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
    _check_text(result.name, "name", limit=MAX_NAME_BYTES)
    if any(ord(c) < 32 for c in result.name):
        raise _fail("name contains control characters")

    _check_labels(result.labels)
    check_secrets(result)
    check_array(result)
    check_dependencies(result, batch_size=batch_size)
    for dependency in result.after:
        if dependency.condition == types_pb2.DEPENDENCY_CONDITION_UNSPECIFIED:
            dependency.condition = types_pb2.DEPENDENCY_CONDITION_OK  # as it reads
    check_project(result.project)
    return ValidatedJob(spec=result, time_limit=time_limit)


# ------------------------------------------------------------------ secrets

# A live job's secrets ride in every snapshot of the queue: tokens and keys, not files.
MAX_SECRETS = 64
MAX_SECRET_BYTES = 64 * 1024
MAX_SECRETS_TOTAL_BYTES = 256 * 1024


def check_secrets(spec: types_pb2.JobSpec) -> None:
    """Checks ``spec.secrets`` (environment variables whose values no API shows).
    No message quotes a value: a refusal is audited and shown to the caller.

    Raises:
        InvalidArgumentError: the first problem found, naming the secret.
    """
    if spec.secret_names:
        raise _fail("secret_names is filled in by the cluster: give secrets with their values")
    if len(spec.secrets) > MAX_SECRETS:
        raise _fail(f"more than {MAX_SECRETS} secrets")
    total = 0
    for name, value in spec.secrets.items():
        check_env_name(name, "secret")
        if name in spec.env:
            raise _fail(f"{name} is both an environment variable and a secret: give it once")
        _check_text(value, f"secret {name}", limit=MAX_SECRET_BYTES)
        total += len(name) + len(value.encode("utf-8"))
    if total > MAX_SECRETS_TOTAL_BYTES:
        raise _fail(f"secrets are larger than {MAX_SECRETS_TOTAL_BYTES // 1024} KiB together")
