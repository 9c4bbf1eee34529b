"""Commands to bytes and back."""

from __future__ import annotations

import pytest

from murmur.node.control.queue import (
    AssignJob,
    CancelJob,
    CommandDecodeError,
    NodeLost,
    ReportRun,
    SubmitJob,
    decode,
    encode,
)
from murmur.node.jobspec import states
from murmur.v1 import control_pb2, types_pb2
from tests.node.control.queue.builders import spec

COMMANDS = [
    SubmitJob("j1", spec(gpus=2, retries=1), "alice", "key-1", 1_700_000_000_000_000),
    CancelJob("j1", "root", True, "wrong image", 5),
    AssignJob("j1", "node-2", "run-9", 2, (3, 1), 6),
    ReportRun("j1", "run-9", "node-2", states.FAILED, 137, "killed", 7, timed_out=True),
    ReportRun("j1", "run-9", "node-2", states.RUNNING, None, "", 8),
    NodeLost("node-2", "stopped answering", 9),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_every_command_survives_its_bytes(command: object) -> None:
    data = encode(command)  # type: ignore[arg-type]
    assert decode(data) == command
    assert encode(decode(data)) == data


def test_encoding_is_deterministic_whatever_the_map_order() -> None:
    one = spec()
    other = types_pb2.JobSpec()
    other.CopyFrom(one)
    other.env.clear()
    other.env["A"] = "1"
    other.env["B"] = "2"
    assert encode(SubmitJob("j", one, "u", "", 0)) == encode(SubmitJob("j", other, "u", "", 0))


@pytest.mark.parametrize(
    "data",
    [
        b"",  # no command: an empty message
        b"\xff\xff\xff",  # not protobuf
        control_pb2.ControlCommand(
            report_run=control_pb2.ReportRunCommand(job_id="j", state=99)  # type: ignore[arg-type]
        ).SerializeToString(),
        b"\xa2\x06\x00",  # field 100: a command kind from a later version
    ],
)
def test_what_is_not_a_known_command_fails_to_decode(data: bytes) -> None:
    with pytest.raises(CommandDecodeError):
        decode(data)
