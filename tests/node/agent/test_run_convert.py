"""The spec a run starts from: secrets join the env, after the user's own."""

from __future__ import annotations

from murmur.node.agent.run_convert import spec_for_launch
from murmur.v1 import types_pb2


def test_secrets_join_the_env_and_leave_the_secrets_field() -> None:
    spec = types_pb2.JobSpec(
        command=["env"], env={"HF_HOME": "/cache", "SEED": "1"}, secrets={"API_KEY": "k"}
    )
    launched = spec_for_launch(spec)
    assert dict(launched.env) == {"HF_HOME": "/cache", "SEED": "1", "API_KEY": "k"}
    assert not launched.secrets
    assert list(launched.command) == ["env"]
    assert dict(spec.secrets) == {"API_KEY": "k"}  # the assignment itself is not changed


def test_a_spec_without_secrets_is_used_as_it_is() -> None:
    spec = types_pb2.JobSpec(command=["env"], env={"SEED": "1"})
    assert spec_for_launch(spec) is spec
