"""Certificate revocations in the control log: RevokeCertificate's rules, its bytes,
and its place in snapshots."""

from __future__ import annotations

import pytest

from murmur.node.control.queue import ControlSnapshotError, ControlState, ErrorKind
from murmur.node.control.queue.commands import RevokeCertificate, SetNodeDrain, decode, encode
from murmur.node.control.queue.state import SNAPSHOT_FORMAT_WITH_REVOCATIONS
from murmur.node.deny_list import Revocation
from murmur.v1 import control_pb2
from tests.node.control.queue.builders import SECOND, Log


def by_name(name: str, at: int = 5 * SECOND) -> RevokeCertificate:
    return RevokeCertificate(name=name, serial="", reason="left the lab", by="admin", at_us=at)


def by_serial(serial: str, at: int = 6 * SECOND) -> RevokeCertificate:
    return RevokeCertificate(name="", serial=serial, reason="", by="admin", at_us=at)


def test_the_command_survives_its_bytes() -> None:
    for command in (by_name("alice"), by_serial("3fa9")):
        assert decode(encode(command)) == command


def test_revocations_are_kept_in_log_order_with_their_index_as_revision() -> None:
    log = Log()
    assert log.state.revocations() == []
    assert log.state.revocations_revision == 0
    log.apply(SetNodeDrain("gpu1", True, "admin", 1))
    assert log.apply(by_name("alice")).ok
    assert log.apply(by_serial("3fa9")).ok
    assert log.state.revocations() == [
        Revocation(2, "alice", "", 5 * SECOND, "admin", "left the lab"),
        Revocation(3, "", "3fa9", 6 * SECOND, "admin", ""),
    ]
    assert log.state.revocations_revision == 3


@pytest.mark.parametrize(
    "command",
    [
        RevokeCertificate(name="", serial="", reason="", by="admin", at_us=1),
        RevokeCertificate(name="alice", serial="ab", reason="", by="admin", at_us=1),
        by_serial("0xAB"),
        by_serial("not-hex"),
        by_name("Not A Name"),
    ],
)
def test_a_malformed_revocation_changes_nothing(command: RevokeCertificate) -> None:
    log = Log()
    result = log.apply(command)
    assert not result.ok
    assert result.error is ErrorKind.INVALID
    assert log.state.revocations() == []


def test_revocations_survive_a_snapshot_and_mark_its_format() -> None:
    log = Log()
    log.apply(by_name("alice"))
    log.apply(by_serial("3fa9"))
    data = log.state.snapshot()
    message = control_pb2.ControlSnapshot.FromString(data)
    assert message.format == SNAPSHOT_FORMAT_WITH_REVOCATIONS
    restored = ControlState.from_snapshot(data)
    assert restored.revocations() == log.state.revocations()
    assert restored.revocations_revision == 2
    assert restored.snapshot() == data


def test_a_snapshot_without_revocations_keeps_its_old_format() -> None:
    log = Log()
    log.apply(SetNodeDrain("gpu1", True, "admin", 1))
    message = control_pb2.ControlSnapshot.FromString(log.state.snapshot())
    assert message.format != SNAPSHOT_FORMAT_WITH_REVOCATIONS
    assert not message.revocations


def test_a_snapshot_holding_one_entry_twice_is_refused() -> None:
    message = control_pb2.ControlSnapshot(format=SNAPSHOT_FORMAT_WITH_REVOCATIONS)
    message.revocations.add(name="alice", at_us=1, index=4)
    message.revocations.add(name="bob", at_us=2, index=4)
    with pytest.raises(ControlSnapshotError):
        ControlState.from_snapshot(message.SerializeToString())
