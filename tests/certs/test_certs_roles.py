"""Roles and the naming rule for users and nodes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur import certs
from murmur.certs import CertificateError, InvalidNameError, Role, validate_name

RULE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def test_role_values_are_the_strings_in_certificates() -> None:
    assert [role.value for role in Role] == ["admin", "member", "viewer", "node"]
    assert Role("node") is Role.NODE
    assert f"{Role.ADMIN}" == "admin"


@pytest.mark.parametrize("name", ["a", "0", "alice", "gpu-01", "j.doe_2", "x" * 63, "9lives"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "Alice", "-lead", ".hidden", "_x", "a b", "x" * 64, "a/b", "é", "bob\n", "a:b"]
)
def test_invalid_names_say_what_is_allowed(name: str) -> None:
    with pytest.raises(InvalidNameError, match=r"invalid name .*lowercase letters, digits"):
        validate_name(name)


@given(st.text(max_size=70))
def test_validate_name_agrees_with_the_rule(name: str) -> None:
    if RULE.fullmatch(name):
        assert validate_name(name) == name
    else:
        with pytest.raises(InvalidNameError):
            validate_name(name)


def test_every_exported_error_is_a_certificate_error() -> None:
    errors = [
        getattr(certs, name)
        for name in certs.__all__
        if isinstance(getattr(certs, name), type) and name.endswith("Error")
    ]
    assert len(errors) == 13
    assert all(issubclass(error, CertificateError) for error in errors)
