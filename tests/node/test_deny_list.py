"""The certificate deny list: by serial, by name up to the revocation time, merging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from murmur.certs import CertificateIdentity, Role
from murmur.node.deny_list import DenyList, Revocation, normalize_serial, refusal_message

T0 = datetime(2025, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def identity(
    name: str = "alice", serial: str = "ab12", not_before: datetime = T0
) -> CertificateIdentity:
    return CertificateIdentity(
        name=name,
        role=Role.MEMBER,
        serial=serial,
        not_before=not_before,
        not_after=not_before + timedelta(days=30),
    )


def revocation(index: int, *, name: str = "", serial: str = "", at: datetime = T0) -> Revocation:
    return Revocation(index, name, serial, us(at), "admin", "left")


def test_an_empty_list_refuses_nobody() -> None:
    deny = DenyList()
    assert deny.refusal(identity()) is None
    assert deny.revision == 0
    assert deny.not_before_floor("alice") is None


def test_by_serial_refuses_exactly_that_certificate() -> None:
    deny = DenyList()
    deny.merge([revocation(3, serial="ab12")])
    assert deny.refusal(identity(serial="ab12")) == revocation(3, serial="ab12")
    assert deny.refusal(identity(serial="ab13")) is None
    assert deny.not_before_floor("alice") is None  # a name's new certificates are fine


def test_by_name_refuses_certificates_issued_up_to_the_revocation() -> None:
    deny = DenyList()
    deny.merge([revocation(3, name="alice", at=T0)])
    assert deny.refusal(identity(not_before=T0 - timedelta(days=1))) is not None
    assert deny.refusal(identity(not_before=T0)) is not None  # at the instant: refused
    assert deny.refusal(identity(not_before=T0 + timedelta(seconds=1))) is None
    assert deny.refusal(identity(name="bob", not_before=T0 - timedelta(days=1))) is None


def test_the_floor_is_the_next_whole_second_after_the_newest_revocation() -> None:
    deny = DenyList()
    deny.merge(
        [
            revocation(3, name="alice", at=T0),
            revocation(5, name="alice", at=T0 - timedelta(hours=1)),
        ]
    )
    floor = deny.not_before_floor("alice")
    assert floor == T0.replace(microsecond=0) + timedelta(seconds=1)
    # Certificates carry whole seconds: one starting at the floor is accepted.
    assert deny.refusal(identity(not_before=floor)) is None
    assert deny.refusal(identity(not_before=floor - timedelta(seconds=1))) is not None


def test_merging_is_a_union_by_log_index_and_listeners_hear_what_is_new() -> None:
    deny = DenyList()
    heard: list[list[int]] = []
    deny.add_listener(lambda added: heard.append([r.index for r in added]))
    assert [r.index for r in deny.merge([revocation(4, name="a"), revocation(2, serial="ff")])] == [
        2,
        4,
    ]
    assert deny.merge([revocation(4, name="a"), revocation(2, serial="ff")]) == []
    deny.merge([revocation(7, name="b"), revocation(0, name="junk"), revocation(8)])
    assert heard == [[2, 4], [7]]
    assert deny.revision == 7
    assert [r.index for r in deny.entries()] == [2, 4, 7]
    assert len(deny) == 3


def test_a_failing_listener_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    deny = DenyList()
    heard: list[int] = []

    def broken(added: list[Revocation]) -> None:
        raise RuntimeError("bug")

    deny.add_listener(broken)
    deny.add_listener(lambda added: heard.extend(r.index for r in added))
    deny.merge([revocation(1, name="a")])
    assert heard == [1]
    assert "listener failed" in caplog.text


@pytest.mark.parametrize(
    ("text", "serial"),
    [("AB:12", "ab12"), ("0x00ab12", "ab12"), ("serial:Ab12", "ab12"), (" ab12 ", "ab12")],
)
def test_serials_are_normalized_as_identities_spell_them(text: str, serial: str) -> None:
    assert normalize_serial(text) == serial


@pytest.mark.parametrize("text", ["", "0x", "xyz", "serial:", "-ab", "a_b"])
def test_a_serial_that_is_not_hex_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a hexadecimal number"):
        normalize_serial(text)


def test_the_refusal_says_what_when_who_and_why() -> None:
    message = refusal_message(identity(), revocation(3, name="alice", at=T0))
    assert message == "certificate of alice was revoked at 2025-03-01 12:00:00 UTC by admin: left"
    message = refusal_message(identity(), revocation(3, serial="ab12", at=T0))
    assert message.startswith("certificate ab12 (alice) was revoked")
