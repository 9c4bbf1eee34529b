"""``murmur cert revoke``: which targets are names and which are serials."""

from __future__ import annotations

import pytest

from murmur._cli.commands_certs import parse_target

SERIAL = "5f3c9a0e2b7d41c88e6a1f0b9d2c3e4f5a6b7c8d"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("alice", ("alice", "")),
        ("node-3", ("node-3", "")),
        ("deadbeef", ("deadbeef", "")),  # short hex: a name
        (SERIAL, ("", SERIAL)),
        (SERIAL.upper(), ("", SERIAL.upper())),
        ("serial:ab12", ("", "ab12")),
        ("0x" + SERIAL, ("", "0x" + SERIAL)),
    ],
)
def test_a_target_is_a_name_unless_it_is_a_serial(target: str, expected: tuple[str, str]) -> None:
    assert parse_target(target) == expected
