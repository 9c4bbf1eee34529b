"""Records of issued user certificates in the control log: RecordUserCertificate's
rules, its bytes, its protocol level, its place in snapshots, and the listing that
joins the revocations in."""

from __future__ import annotations

import pytest

from murmur.node.control.queue import ControlState, ErrorKind
from murmur.node.control.queue.cluster_jobs import user_listing
from murmur.node.control.queue.commands import (
    RecordUserCertificate,
    RevokeCertificate,
    SetNodeDrain,
    decode,
    encode,
    to_message,
)
from murmur.node.control.queue.protocol import required_level
from murmur.node.control.queue.state import SNAPSHOT_FORMAT_WITH_USER_CERTIFICATES
from murmur.v1 import control_pb2, types_pb2
from tests.node.control.queue.builders import SECOND, Log

DAY = 86_400 * SECOND


def issued(
    name: str = "alice", serial: str = "3fa9", at: int = 10 * SECOND
) -> RecordUserCertificate:
    return RecordUserCertificate(
        name=name, role=types_pb2.ROLE_MEMBER, serial=serial, not_before_us=at,
        not_after_us=at + 90 * DAY, issued_by="admin", signed_by="node-1",
    )  # fmt: skip


def test_the_command_survives_its_bytes_and_needs_level_6() -> None:
    command = issued()
    assert decode(encode(command)) == command
    assert required_level(to_message(command)) == 6


def test_certificates_are_kept_in_issue_order_once_per_serial() -> None:
    log = Log()
    log.apply(SetNodeDrain("gpu1", True, "admin", 1))
    assert log.apply(issued("alice", "aa")).ok
    assert log.apply(issued("bob", "bb")).ok
    assert log.apply(issued("alice", "aa")).ok  # a retried commit: no second record
    entries = log.state.user_certificates.entries()
    assert [(e.index, e.certificate.name) for e in entries] == [(2, "alice"), (3, "bob")]


@pytest.mark.parametrize(
    "command",
    [
        issued(name="Not A Name"),
        issued(serial="0xAB"),
        RecordUserCertificate("alice", types_pb2.ROLE_NODE, "ab", 1, 2, "admin", "node-1"),
        RecordUserCertificate("alice", types_pb2.ROLE_MEMBER, "ab", 2, 2, "admin", "node-1"),
    ],
)
def test_a_malformed_record_changes_nothing(command: RecordUserCertificate) -> None:
    log = Log()
    result = log.apply(command)
    assert not result.ok
    assert result.error is ErrorKind.INVALID
    assert len(log.state.user_certificates) == 0


def test_records_survive_a_snapshot_and_mark_its_format() -> None:
    log = Log()
    log.apply(issued("alice", "aa"))
    log.apply(issued("bob", "bb"))
    data = log.state.snapshot()
    assert (
        control_pb2.ControlSnapshot.FromString(data).format
        == SNAPSHOT_FORMAT_WITH_USER_CERTIFICATES
    )
    restored = ControlState.from_snapshot(data)
    assert restored.user_certificates.entries() == log.state.user_certificates.entries()
    assert restored.snapshot() == data


def test_a_snapshot_without_records_keeps_its_old_format() -> None:
    log = Log()
    log.apply(SetNodeDrain("gpu1", True, "admin", 1))
    message = control_pb2.ControlSnapshot.FromString(log.state.snapshot())
    assert message.format != SNAPSHOT_FORMAT_WITH_USER_CERTIFICATES
    assert not message.user_certificates


def test_the_listing_marks_what_a_revocation_denies_as_every_node_does() -> None:
    log = Log()
    log.apply(issued("alice", "aa", at=10 * SECOND))
    log.apply(issued("bob", "bb", at=10 * SECOND))
    log.apply(RevokeCertificate("alice", "", "left", "admin", 20 * SECOND))
    log.apply(issued("alice", "cc", at=30 * SECOND))  # issued again after the revocation
    log.apply(RevokeCertificate("", "bb", "lost laptop", "root", 40 * SECOND))
    listing = user_listing(log.state.user_certificates.entries(), log.state.revocations())
    revoked = {(c.name, c.serial): (c.revoked, c.revoke_reason) for c in listing.certificates}
    assert revoked == {
        ("alice", "aa"): (True, "left"),
        ("bob", "bb"): (True, "lost laptop"),
        ("alice", "cc"): (False, ""),
    }
    assert listing.certificates[0].not_after.ToMicroseconds() == 10 * SECOND + 90 * DAY
