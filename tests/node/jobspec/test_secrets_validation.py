"""Secrets in a spec: env-name rules, apart from the env, bounded, and no refusal
ever quotes a value."""

from __future__ import annotations

import pytest

from murmur.node.errors import InvalidArgumentError
from murmur.node.jobspec.secrets import without_secret_values
from murmur.node.jobspec.validation import (
    MAX_SECRET_BYTES,
    MAX_SECRETS,
    validate_job_spec,
)
from murmur.v1 import types_pb2

VALUE = "s3cr3t-value"


def spec(**fields: object) -> types_pb2.JobSpec:
    return types_pb2.JobSpec(
        runtime=types_pb2.JOB_RUNTIME_PROCESS,
        command=["python", "train.py"],
        **fields,  # type: ignore[arg-type]
    )


def test_valid_secrets_pass_unchanged() -> None:
    checked = validate_job_spec(
        spec(env={"SEED": "1"}, secrets={"API_KEY": VALUE, "_X2": ""}), known_datasets=()
    )
    assert dict(checked.spec.secrets) == {"API_KEY": VALUE, "_X2": ""}


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"secrets": {"1BAD": VALUE}}, "secret name '1BAD' is invalid"),
        ({"secrets": {"A-B": VALUE}}, "secret name 'A-B' is invalid"),
        ({"secrets": {"MURMUR_JOB_ID": VALUE}}, "set by murmur"),
        ({"secrets": {"CUDA_VISIBLE_DEVICES": VALUE}}, "set by murmur"),
        ({"env": {"TOKEN": "x"}, "secrets": {"TOKEN": VALUE}}, "both an environment variable"),
        ({"secrets": {"A": VALUE + "\x00"}}, "NUL character"),
        ({"secrets": {"A": "x" * (MAX_SECRET_BYTES + 1)}}, "secret A is longer than"),
        ({"secrets": {f"S{i}": "" for i in range(MAX_SECRETS + 1)}}, "more than 64 secrets"),
        ({"secrets": {f"S{i}": "x" * 60_000 for i in range(5)}}, "larger than 256 KiB"),
        ({"secret_names": ["A"]}, "secret_names is filled in by the cluster"),
    ],
)
def test_bad_secrets_are_refused_without_quoting_the_value(
    fields: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=fragment) as refused:
        validate_job_spec(spec(**fields), known_datasets=())
    assert VALUE not in str(refused.value)


def test_answers_show_secret_names_only() -> None:
    submitted = spec(secrets={"B": "2", "A": "1"})
    shown = without_secret_values(submitted)
    assert not shown.secrets
    assert list(shown.secret_names) == ["A", "B"]
    assert dict(submitted.secrets) == {"B": "2", "A": "1"}  # a copy: the given one is kept
    plain = spec(env={"A": "1"})
    assert without_secret_values(plain) is plain
