"""A service's spec as a user sends it, checked and completed in one place (as
``validation.py`` does for a job's)."""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import PurePosixPath

from murmur.node.errors import InvalidArgumentError
from murmur.node.jobspec.validation import validate_job_spec
from murmur.v1 import types_pb2

RESTART_ALWAYS = "always"
RESTART_ON_FAILURE = "on-failure"

MAX_REPLICAS = 64
MAX_NAMES = 32
"""Aliases and adapters, each."""

SERVICE_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
"""A service's name: a DNS label of at most 40 characters (it is in its replicas'
job ids and labels)."""
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
"""A model name, alias or adapter name as OpenAI clients write them (no ':', which
joins a model to an adapter)."""

DEFAULT_READY_PATH = "/v1/models"
DEFAULT_PORT_NAME = "http"
_PORT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,14}$")
"""A port's name becomes part of an environment variable's: no - or upper case."""
DEFAULT_PERIOD_S = 2
DEFAULT_TIMEOUT_S = 1
DEFAULT_FAILURE_THRESHOLD = 3
MAX_PROBE_SECONDS = 3600


def _fail(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"invalid service: {message}")


def validate_service_spec(
    spec: types_pb2.ServiceSpec,
    *,
    known_datasets: Collection[str],
    path_roots: Collection[PurePosixPath] = (),
) -> types_pb2.ServiceSpec:
    """Checks ``spec`` and returns a copy with defaults filled in (the probe's, the
    restart policy, the template's as a job's).

    Raises:
        InvalidArgumentError: the first problem found, naming the field.
    """
    result = types_pb2.ServiceSpec()
    result.CopyFrom(spec)
    if not SERVICE_NAME_RE.match(result.name):
        raise _fail(f"name {result.name[:64]!r}: lowercase letters, digits and -, at most 40")
    if not 0 <= result.replicas <= MAX_REPLICAS:
        raise _fail(f"replicas must be between 0 and {MAX_REPLICAS}")
    if not _MODEL_RE.match(result.model):
        raise _fail("a service needs a model name (--model): letters, digits, . _ / -")
    if len(result.aliases) > MAX_NAMES or len(result.adapters) > MAX_NAMES:
        raise _fail(f"at most {MAX_NAMES} aliases and {MAX_NAMES} adapters")
    names = [result.model, *result.aliases, *result.adapters]
    for name in names:
        if not _MODEL_RE.match(name):
            raise _fail(f"{name[:64]!r} is not a model name (letters, digits, . _ / -)")
    if len(set(names)) != len(names):
        raise _fail("a model, alias or adapter name is given twice")
    for adapter, path in result.adapters.items():
        if not path or "\0" in path:
            raise _fail(f"adapter {adapter} needs a path")
    result.port_name = result.port_name or DEFAULT_PORT_NAME
    if not _PORT_NAME_RE.match(result.port_name):
        raise _fail(
            f"port name {result.port_name[:32]!r}: a lowercase letter, then letters, "
            "digits or _, at most 15 (it names the variable PORT_<NAME>)"
        )
    result.restart = result.restart or RESTART_ALWAYS
    if result.restart not in (RESTART_ALWAYS, RESTART_ON_FAILURE):
        raise _fail(f"restart must be {RESTART_ALWAYS} or {RESTART_ON_FAILURE}")
    template = result.template
    if template.nodes > 1:
        raise _fail("a replica runs on one node (no --nodes)")
    if template.HasField("time_limit") or template.retries:
        raise _fail("a replica has no time limit and no retries: it restarts as --restart says")
    if template.secrets:
        raise _fail("a service's replicas take no secrets yet: give them in the environment")
    if template.HasField("array") or template.after:
        raise _fail("a replica is one job: no array, sweep or dependencies")
    result.template.CopyFrom(
        validate_job_spec(template, known_datasets=known_datasets, path_roots=path_roots).spec
    )
    _complete_probe(result.readiness, "readiness")
    if result.HasField("liveness"):
        _complete_probe(result.liveness, "liveness")
    return result


def _complete_probe(probe: types_pb2.HttpProbe, kind: str) -> None:
    probe.path = probe.path or DEFAULT_READY_PATH
    if not probe.path.startswith("/") or any(c.isspace() or c == "\0" for c in probe.path):
        raise _fail(f"the {kind} path must start with / and hold no spaces: {probe.path!r}")
    if not probe.HasField("period"):
        probe.period.seconds = DEFAULT_PERIOD_S
    if not probe.HasField("timeout"):
        probe.timeout.seconds = DEFAULT_TIMEOUT_S
    for field, value in (("period", probe.period), ("timeout", probe.timeout)):
        if not 0 < value.ToNanoseconds() <= MAX_PROBE_SECONDS * 10**9:
            raise _fail(f"the {kind} {field} must be between 0 and {MAX_PROBE_SECONDS} s")
    if not 0 <= probe.initial_delay.ToNanoseconds() <= MAX_PROBE_SECONDS * 10**9:
        raise _fail(f"the {kind} initial delay must be between 0 and {MAX_PROBE_SECONDS} s")
    probe.failure_threshold = probe.failure_threshold or DEFAULT_FAILURE_THRESHOLD
