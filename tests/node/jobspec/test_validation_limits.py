"""Caps on every field of a job spec, with refusals that name the field and the limit."""

from __future__ import annotations

from typing import Any

import pytest

from murmur.node.errors import InvalidArgumentError
from murmur.node.jobspec import validation
from murmur.node.jobspec.validation import (
    check_idempotency_key,
    check_label,
    check_reason,
    validate_job_spec,
)
from murmur.v1 import types_pb2


def _validate(**fields: Any) -> types_pb2.JobSpec:
    spec = types_pb2.JobSpec(**{"command": ["true"], **fields})
    return validate_job_spec(spec, known_datasets={"imagenet"}).spec


def test_a_plain_spec_passes() -> None:
    assert _validate(env={"A": "1"}, labels={"team": "vision"}).queue == "default"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"command": ["x"] * (validation.MAX_ARGS + 1)}, "more than 4096 arguments"),
        ({"command": ["x" * (validation.MAX_ARG_BYTES + 1)]}, r"command\[0\] is longer than"),
        (
            {"command": ["x" * 100_000] * 11},
            f"command is longer than {validation.MAX_COMMAND_BYTES} bytes in all",
        ),
        ({"command": [""]}, r"command\[0\] \(the program\) is empty"),
        ({"name": "n" * 257}, "name is longer than 256 bytes"),
        ({"queue": "q" * 64}, "queue .* is invalid"),
        ({"image": "a" * 256}, "image is longer than 255 bytes"),
        ({"gpus": types_pb2.GpuRequest(count=1, model="m" * 129)}, "gpu model is longer"),
        ({"memory_bytes": 2**64 - 1}, "memory_bytes must be at most"),
        ({"datasets": ["imagenet"] * 65}, "datasets has more than 64 entries"),
        ({"datasets": [""]}, r"datasets\[0\] is empty"),
        ({"datasets": ["d" * 64]}, r"datasets\[0\] is longer than 63 bytes"),
    ],
)
def test_each_cap_names_its_field_and_limit(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        _validate(**fields)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"": "x"}, "environment variable name is empty"),
        ({"A=B": "x"}, "name 'A=B' is invalid"),
        ({"1A": "x"}, "name '1A' is invalid"),
        ({"A-B": "x"}, "name 'A-B' is invalid"),
        ({"É": "x"}, "is invalid"),
        ({"A" * 257: "x"}, "longer than 256 bytes"),
        ({"MURMUR_JOB_ID": "x"}, "MURMUR_JOB_ID is set by murmur"),
        ({"MURMUR_ANYTHING": "x"}, "is set by murmur"),
        ({"CUDA_VISIBLE_DEVICES": "0"}, "is set by murmur"),
        ({"A": "x" * (validation.MAX_ENV_VALUE_BYTES + 1)}, "env A is longer than"),
        ({f"V{i}": "x" for i in range(validation.MAX_ENV + 1)}, "more than 1024 variables"),
        (
            {f"V{i}": "x" * 100_000 for i in range(11)},
            f"env is larger than {validation.MAX_ENV_BYTES} bytes",
        ),
    ],
)
def test_environment_names_and_sizes(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        _validate(env=env)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("team", "vision"),
        ("team", ""),
        ("example.com/team", "a.b-c_d"),
        ("a" * 63, "v" * 63),
        ("Team_1.x", "V1"),
    ],
)
def test_labels_in_kubernetes_syntax_pass(key: str, value: str) -> None:
    check_label(key, value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("", "v", "label key '' is invalid"),
        ("-team", "v", "is invalid"),
        ("team-", "v", "is invalid"),
        ("a" * 64, "v", "at most 63"),
        ("te am", "v", "is invalid"),
        ("/team", "v", "empty prefix"),
        ("Example.com/team", "v", "prefix 'Example.com' is invalid"),
        ("a/b/c", "v", "prefix 'a/b' is invalid"),
        ("murmur.node", "v", "reserved"),
        ("murmur/anything", "v", "reserved"),
        ("team", "v" * 64, "invalid value"),
        ("team", "two words", "invalid value"),
        ("team", "-x", "invalid value"),
    ],
)
def test_labels_outside_the_syntax_are_refused(key: str, value: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        check_label(key, value)


def test_more_labels_than_the_cap_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="labels has more than 64 entries"):
        _validate(labels={f"k{i}": "v" for i in range(65)})


@pytest.mark.parametrize(
    "fields",
    [
        {"command": ["echo", "a\x00b"]},
        {"name": "a\x00"},
        {"env": {"A": "x\x00"}},
        {"labels": {"k": "\x00"}},
        {"workdir": "/tmp/\x00"},
        {"gpus": types_pb2.GpuRequest(count=1, model="A\x00")},
        {"datasets": ["image\x00net"]},
    ],
)
def test_a_nul_anywhere_in_the_spec_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError, match="contains a NUL character"):
        _validate(**fields)


def test_a_refusal_does_not_echo_a_huge_value() -> None:
    with pytest.raises(InvalidArgumentError) as refused:
        _validate(env={"A" * 100_000: "x"})
    assert len(str(refused.value)) < 300


def test_idempotency_keys_and_reasons_have_caps() -> None:
    check_idempotency_key("0b6c9a3e-0c1d-4a57-9d6f-1d2b3c4d5e6f")
    check_idempotency_key("")
    with pytest.raises(InvalidArgumentError, match="idempotency_key is longer than 128 bytes"):
        check_idempotency_key("k" * 129)
    with pytest.raises(InvalidArgumentError, match="idempotency_key contains control"):
        check_idempotency_key("a\nb")
    check_reason("no longer needed")
    with pytest.raises(InvalidArgumentError, match="reason is longer than 1024 bytes"):
        check_reason("r" * 1025)
