"""A service's spec, checked and completed in one place; every refusal names the
field."""

from __future__ import annotations

import pytest

from murmur.node.errors import InvalidArgumentError
from murmur.node.jobspec.services import validate_service_spec
from murmur.node.jobspec.validation import validate_job_spec
from murmur.v1 import types_pb2


def spec(**fields: object) -> types_pb2.ServiceSpec:
    template = types_pb2.JobSpec(command=["vllm", "serve"], runtime=types_pb2.JOB_RUNTIME_PROCESS)
    base = types_pb2.ServiceSpec(name="llama", template=template, replicas=2, model="llama-3-8b")
    for name, value in fields.items():
        if name == "template":
            base.template.MergeFrom(value)  # type: ignore[arg-type]
        elif isinstance(value, list):
            getattr(base, name).extend(value)
        elif isinstance(value, dict):
            getattr(base, name).update(value)
        else:
            setattr(base, name, value)
    return base


def test_defaults_are_filled_in() -> None:
    checked = validate_service_spec(spec(), known_datasets=())
    assert checked.restart == "always"
    assert checked.readiness.path == "/v1/models"
    assert checked.readiness.period.seconds == 2
    assert checked.readiness.timeout.seconds == 1
    assert checked.readiness.failure_threshold == 3
    assert checked.template.queue == "default"  # completed as a job's
    assert not checked.HasField("liveness")  # none unless asked for
    assert checked.port_name == "http"


def test_a_liveness_probe_asked_for_is_completed_and_checked() -> None:
    asked = spec()
    asked.liveness.failure_threshold = 5
    checked = validate_service_spec(asked, known_datasets=())
    assert checked.liveness.path == "/v1/models"
    assert (checked.liveness.period.seconds, checked.liveness.failure_threshold) == (2, 5)
    asked.liveness.path = "health"
    with pytest.raises(InvalidArgumentError, match="liveness path"):
        validate_service_spec(asked, known_datasets=())


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"name": "Llama"}, "name"),
        ({"name": "x" * 41}, "name"),
        ({"replicas": 65}, "replicas"),
        ({"model": ""}, "model"),
        ({"model": "a:b"}, "model"),
        ({"aliases": ["llama-3-8b"]}, "twice"),
        ({"adapters": {"sql": ""}}, "adapter sql"),
        ({"restart": "sometimes"}, "restart"),
        ({"port_name": "Http-2"}, "port name"),
        ({"template": types_pb2.JobSpec(nodes=2)}, "one node"),
        ({"template": types_pb2.JobSpec(retries=1)}, "retries"),
        ({"template": types_pb2.JobSpec(command=[])}, "command"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(fields: dict[str, object], says: str) -> None:
    bad = spec(**fields)
    if fields.get("template") == types_pb2.JobSpec(command=[]):
        del bad.template.command[:]
    with pytest.raises(InvalidArgumentError, match=says):
        validate_service_spec(bad, known_datasets=())


def test_a_bad_probe_is_refused() -> None:
    bad = spec()
    bad.readiness.path = "v1/models"
    with pytest.raises(InvalidArgumentError, match="readiness path"):
        validate_service_spec(bad, known_datasets=())
    bad = spec()
    bad.readiness.period.seconds = 7200
    with pytest.raises(InvalidArgumentError, match="period"):
        validate_service_spec(bad, known_datasets=())


def test_a_job_submitted_as_a_replica_is_refused() -> None:
    job = types_pb2.JobSpec(command=["x"], replica_of=types_pb2.ReplicaOf(service="llama"))
    with pytest.raises(InvalidArgumentError, match="replica_of"):
        validate_job_spec(job, known_datasets=())
