"""The words the CLI reads and prints for the proto's enums are the enums' own names.

murmur/_cli writes the words of ``--state``, ``--runtime`` and ``--role`` out, so that
parsing a command line loads no protobuf (test_startup_weight.py); these tests keep
them in step with proto/murmur/v1/types.proto.
"""

from __future__ import annotations

import pytest

from murmur._cli.commands_admin import USER_ROLES
from murmur._cli.commands_jobs import JOB_STATES
from murmur._cli.output import node_state_name
from murmur._cli.run_flags import RUNTIMES
from murmur.v1 import types_pb2


def words(names: list[str], prefix: str) -> tuple[str, ...]:
    return tuple(
        name.removeprefix(prefix).lower() for name in names if name != f"{prefix}UNSPECIFIED"
    )


def test_job_states_are_the_proto_job_states_in_order() -> None:
    assert words(types_pb2.JobState.keys(), "JOB_STATE_") == JOB_STATES


def test_runtimes_are_the_proto_job_runtimes_in_order() -> None:
    assert words(types_pb2.JobRuntime.keys(), "JOB_RUNTIME_") == RUNTIMES


def test_user_roles_are_the_proto_roles_but_the_node_role() -> None:
    assert set(words(types_pb2.Role.keys(), "ROLE_")) == {*USER_ROLES, "node"}


@pytest.mark.parametrize(
    ("state", "name"),
    [
        (types_pb2.NODE_STATE_ALIVE, "alive"),
        (types_pb2.NODE_STATE_SUSPECT, "suspect"),
        (types_pb2.NODE_STATE_DEAD, "dead"),
        (types_pb2.NODE_STATE_LEFT, "left"),
        (types_pb2.NODE_STATE_DRAINING, "draining"),
        (types_pb2.NODE_STATE_UNSPECIFIED, "unknown"),
        (99, "unknown"),  # from a newer node: printed, not a crash
    ],
)
def test_node_states_print_as_lower_case_words(state: int, name: str) -> None:
    assert node_state_name(state) == name
