"""CA rotation steps in the control state: one rotation at a time, never the
signing CA retired, kept by snapshots."""

from __future__ import annotations

import pytest
from cryptography import x509

from murmur.certs import CertificateAuthority, Role
from murmur.node.control.queue.commands import AddTrustedCa, RetireCa, decode, encode
from murmur.node.control.queue.results import ApplyResult, ErrorKind
from murmur.node.control.queue.state import ControlState
from murmur.node.trust_anchors import rotation_in_progress


@pytest.fixture(scope="module")
def first() -> CertificateAuthority:
    return CertificateAuthority.generate(x509.Name.from_rfc4514_string("CN=Murmur lab CA"))


def successor_of(ca: CertificateAuthority) -> tuple[CertificateAuthority, AddTrustedCa]:
    successor = ca.successor()
    return successor, AddTrustedCa(successor.certificate_pem, ca.cross_sign(successor), "admin", 5)


class Log:
    def __init__(self) -> None:
        self.state = ControlState()
        self.index = 0

    def apply(self, command: AddTrustedCa | RetireCa) -> ApplyResult:
        self.index += 1
        return self.state.apply(1, self.index, encode(command))


def test_commands_round_trip(first: CertificateAuthority) -> None:
    _, add = successor_of(first)
    for command in (add, RetireCa(first.fingerprint, "admin", 9)):
        assert decode(encode(command)) == command


def test_a_rotation_adds_then_retires(first: CertificateAuthority) -> None:
    log = Log()
    successor, add = successor_of(first)
    assert log.apply(add).ok
    under_way = rotation_in_progress(log.state.ca_rotations.changes())
    assert under_way is not None
    assert under_way.fingerprint == successor.fingerprint
    assert log.state.ca_rotations.revision == 1
    # One rotation at a time.
    _, another = successor_of(successor)
    refused = log.apply(another)
    assert refused.error is ErrorKind.FAILED_PRECONDITION
    assert "under way" in refused.message
    # The signing CA is never retired; the old one is, once.
    assert log.apply(RetireCa(successor.fingerprint, "admin", 6)).error is ErrorKind.INVALID
    assert log.apply(RetireCa(first.fingerprint, "admin", 7)).ok
    assert rotation_in_progress(log.state.ca_rotations.changes()) is None
    again = log.apply(RetireCa(first.fingerprint, "admin", 8))
    assert again.error is ErrorKind.FAILED_PRECONDITION
    assert log.state.ca_rotations.revision == 4  # the refused entries (2, 3, 5) add nothing
    # The next rotation may start.
    assert log.apply(another).ok


def test_a_retirement_needs_a_rotation(first: CertificateAuthority) -> None:
    refused = Log().apply(RetireCa(first.fingerprint, "admin", 1))
    assert refused.error is ErrorKind.FAILED_PRECONDITION
    assert "no CA rotation" in refused.message


@pytest.mark.parametrize("what", ["garbage", "leaf", "wrong cross", "not self-signed"])
def test_what_is_not_a_ca_is_refused(first: CertificateAuthority, what: str) -> None:
    successor, add = successor_of(first)
    other = first.successor()
    if what == "garbage":
        command = AddTrustedCa(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n", add.cross_certificate_pem, "a", 1
        )
    elif what == "leaf":
        leaf = first.issue(name="n1", role=Role.NODE, validity_days=1).certificate_pem
        command = AddTrustedCa(leaf, add.cross_certificate_pem, "a", 1)
    elif what == "wrong cross":
        command = AddTrustedCa(successor.certificate_pem, first.cross_sign(other), "a", 1)
    else:
        command = AddTrustedCa(add.cross_certificate_pem, add.cross_certificate_pem, "a", 1)
    log = Log()
    assert log.apply(command).error is ErrorKind.INVALID
    assert log.state.ca_rotations.changes() == []


def test_snapshots_keep_the_steps(first: CertificateAuthority) -> None:
    log = Log()
    _, add = successor_of(first)
    log.apply(add)
    log.apply(RetireCa(first.fingerprint, "admin", 7))
    restored = ControlState.from_snapshot(log.state.snapshot())
    assert restored.ca_rotations.changes() == log.state.ca_rotations.changes()
    assert restored.ca_rotations.revision == 2
