"""The control protocol's levels (node/control/queue/protocol.py): which level each
entry needs, the level an entry carries, and the pure gating decisions."""

from __future__ import annotations

import pytest

from murmur.node.control.queue.commands import (
    CancelJob,
    CreateApiKey,
    CreateService,
    RollReplica,
    SetClusterLevel,
    SetLabPolicy,
    SubmitJob,
    SubmitJobs,
    UpdateService,
    encode,
    to_message,
)
from murmur.node.control.queue.protocol import (
    BASE_LEVEL,
    COMMAND_LEVELS,
    LEVELS,
    PROTOCOL_LEVEL,
    UNKNOWN,
    MemberLevel,
    cluster_may_speak,
    entry_level,
    feature,
    level_to_raise,
    refusal,
    required_level,
)
from murmur.v1 import control_pb2, types_pb2
from tests.node.control.queue.builders import spec


def service(liveness: types_pb2.HttpProbe | None = None) -> types_pb2.ServiceSpec:
    made = types_pb2.ServiceSpec(name="chat", replicas=2, model="m", template=spec(gpus=1))
    if liveness is not None:
        made.liveness.CopyFrom(liveness)
    return made


def level_of(command: object) -> int:
    return required_level(to_message(command))  # type: ignore[arg-type]


def test_every_command_of_the_wire_contract_has_a_level() -> None:
    # A command added to control.proto without a level here would be proposed to
    # older voters, which would skip it: this holds the table to the contract.
    oneof = control_pb2.ControlCommand.DESCRIPTOR.oneofs_by_name["command"]
    assert set(COMMAND_LEVELS) == {field.name for field in oneof.fields}
    assert set(COMMAND_LEVELS.values()) <= set(LEVELS)


def test_levels_count_up_from_one_and_name_what_they_added() -> None:
    assert sorted(LEVELS) == list(range(BASE_LEVEL, PROTOCOL_LEVEL + 1))
    assert feature(2) == "service updates"
    assert feature(PROTOCOL_LEVEL + 3) == "commands of a newer murmur"


@pytest.mark.parametrize(
    ("command", "level"),
    [
        (SubmitJob("j", spec(), "alice", "", 1), 1),
        (CancelJob("j", "alice", False, "", 1), 1),
        (CreateService(service(), "alice", 1), 1),
        (SetLabPolicy('[defaults]\ntime_limit = "1h"\n', "admin", 1), 1),
        (UpdateService(service(), "alice", False, 1), 2),
        (RollReplica("chat", 0, 2, "chat-1-0-3", 1), 2),
        (CreateService(service(liveness=types_pb2.HttpProbe(path="/live")), "alice", 1), 3),
        (CreateApiKey("k", "n", "alice", "00" * 32, (), 0, 0, 1), 4),
        (SubmitJob("j", types_pb2.JobSpec(project="vision"), "alice", "", 1), 5),
        (
            SubmitJob(
                "j",
                types_pb2.JobSpec(after=[types_pb2.Dependency(job_id="other")]),
                "alice",
                "",
                1,
            ),
            5,
        ),
        (
            SubmitJob(
                "j", types_pb2.JobSpec(array=types_pb2.ArraySpec(indices="0-3")), "alice", "", 1
            ),
            5,
        ),
        (SubmitJobs((SubmitJob("j", spec(), "alice", "", 1),)), 5),
        (SetLabPolicy('[defaults]\nproject = "lab"\n', "admin", 1), 5),
        (SetLabPolicy('[projects.vision]\nmlflow_tracking_uri = "http://m"\n', "admin", 1), 5),
        (SetLabPolicy("not = [toml", "admin", 1), 1),  # every version refuses it alike
        (SetClusterLevel(2, 1), 2),
        (SetClusterLevel(5, 1), 5),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, int) else str(value),
)
def test_an_entry_needs_the_level_of_its_command_and_of_what_it_uses(
    command: object, level: int
) -> None:
    assert level_of(command) == level


def test_an_entry_above_the_base_level_carries_it_and_a_base_entry_is_as_before() -> None:
    base = to_message(SubmitJob("j", spec(), "alice", "", 1))
    assert not base.protocol_level  # byte for byte what a version before levels wrote
    carried = control_pb2.ControlCommand.FromString(encode(UpdateService(service(), "a", False, 1)))
    assert carried.protocol_level == 2


def test_the_level_an_entry_carries_counts_even_where_its_content_says_less() -> None:
    # A later version that gives an old command a new meaning sets the number; this
    # version reads the number, not the field it does not know.
    message = to_message(CancelJob("j", "alice", False, "", 1))
    message.protocol_level = PROTOCOL_LEVEL + 1
    assert required_level(message) == PROTOCOL_LEVEL + 1


def test_a_command_this_version_does_not_know_needs_more_than_it_speaks() -> None:
    later_kind = b"\xa2\x06\x00"  # field 100: a command of a later version
    assert entry_level(later_kind) == UNKNOWN > PROTOCOL_LEVEL
    assert entry_level(b"") == BASE_LEVEL  # nothing at all: refused alike everywhere
    assert entry_level(b"\xff\xff\xff") == BASE_LEVEL  # not protobuf: the same


def node(name: str, level: int, *, counts: bool = True, down: bool = False) -> MemberLevel:
    return MemberLevel(name, "0.1.0", level, counts=counts, down=down)


def test_a_command_is_refused_while_a_node_that_counts_lacks_its_level() -> None:
    members = [node("gpu-1", 5), node("gpu-2", 5), node("gpu-3", 1)]
    assert refusal(2, members) == (
        "node gpu-3 runs murmur 0.1.0 (protocol 1), which does not know service updates "
        "(protocol 2): finish the upgrade first"
    )
    assert refusal(1, members) is None
    assert refusal(2, [node("gpu-1", 5), node("gpu-3", 1, counts=False)]) is None


def test_the_refusal_names_the_furthest_behind_and_counts_the_rest() -> None:
    members = [
        node("gpu-1", 4),
        node("gpu-2", 2, down=True),
        node("gpu-3", 3),
        MemberLevel("gpu-4", "", 1),
    ]
    assert refusal(5, members, what="job arrays") == (
        "node gpu-4 runs a version not known yet (protocol 1) (and 3 more), which does not "
        "know job arrays (protocol 5): finish the upgrade first"
    )
    assert refusal(3, members[:2]) == (
        "node gpu-2 (down) runs murmur 0.1.0 (protocol 2), which does not know service "
        "liveness probes (protocol 3): finish the upgrade first"
    )


def test_the_cluster_level_rises_to_what_every_node_that_counts_speaks() -> None:
    members = [node("a", 5), node("b", 3), node("c", 1, counts=False)]
    assert cluster_may_speak(members) == 3
    assert level_to_raise(1, members) == 3
    assert level_to_raise(3, members) is None
    assert level_to_raise(4, members) is None  # never down
    assert cluster_may_speak([]) == BASE_LEVEL
