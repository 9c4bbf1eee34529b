"""Which Unix account runs a user's job, and whether it may reach a path: the rules,
with a passwd database of the test's own and real files for the permission walk."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from murmur.node.agent.runtimes.accounts import (
    EXECUTE,
    READ,
    WRITE,
    AccountPolicy,
    AccountRefusedError,
    account_may_access,
)
from murmur.node.agent.runtimes.base import RunAccount
from tests.support.unix_accounts import reachable_directory

PASSWD = {
    "alice": (1001, 1001, "/home/alice"),
    "asmith": (1002, 1002, "/home/asmith"),
    "murmur-jobs": (990, 990, "/var/lib/murmur-jobs"),
    "root": (0, 0, "/root"),
}


def lookup(name: str) -> pwd.struct_passwd:
    uid, gid, home = PASSWD[name]  # KeyError: no such account, as pwd says
    return pwd.struct_passwd((name, "x", uid, gid, "", home, "/bin/sh"))


def policy(**settings: object) -> AccountPolicy:
    defaults: dict[str, object] = {
        "daemon_uid": 0,
        "lookup": lookup,
        "groups_of": lambda name, gid: (gid, 27),
    }
    return AccountPolicy(**{**defaults, **settings})  # type: ignore[arg-type]


def test_a_user_runs_as_the_account_of_the_same_name() -> None:
    account = policy().resolve("alice", node="n1")

    assert (account.name, account.uid, account.gid, account.home) == (
        "alice",
        1001,
        1001,
        "/home/alice",
    )
    assert account.groups == (1001, 27)


def test_the_mapping_wins_over_the_same_name() -> None:
    account = policy(mapping={"alice": "asmith"}).resolve("alice", node="n1")

    assert account.name == "asmith"


def test_a_mapping_to_a_missing_account_is_refused_not_sent_to_the_fallback() -> None:
    with pytest.raises(
        AccountRefusedError, match=r"maps to account 'ghost'.*does not exist on node n1"
    ):
        policy(mapping={"alice": "ghost"}, fallback="murmur-jobs").resolve("alice", node="n1")


def test_a_user_without_an_account_is_refused_with_what_to_do() -> None:
    with pytest.raises(AccountRefusedError) as refused:
        policy().resolve("bob", node="n1")

    message = str(refused.value)
    assert "user 'bob' has no Unix account on node n1" in message
    assert "job_accounts" in message
    assert "job_fallback_account" in message


def test_a_user_without_an_account_runs_as_the_fallback() -> None:
    assert policy(fallback="murmur-jobs").resolve("bob", node="n1").name == "murmur-jobs"


def test_a_missing_fallback_account_is_named() -> None:
    with pytest.raises(AccountRefusedError, match="fallback account 'nobody-here'"):
        policy(fallback="nobody-here").resolve("bob", node="n1")


@pytest.mark.parametrize(
    ("settings", "user"),
    [
        ({}, "root"),
        ({"mapping": {"alice": "root"}}, "alice"),
        ({"fallback": "root"}, "bob"),
    ],
)
def test_root_is_refused_unless_the_node_allows_it(settings: dict[str, object], user: str) -> None:
    with pytest.raises(AccountRefusedError, match=r"maps to root on node n1.*allow_root_jobs"):
        policy(**settings).resolve(user, node="n1")

    assert policy(allow_root=True, **settings).resolve(user, node="n1").uid == 0


def test_a_daemon_that_is_not_root_runs_jobs_only_as_itself() -> None:
    as_alice = policy(daemon_uid=1001)

    assert as_alice.resolve("alice", node="n1").uid == 1001
    with pytest.raises(AccountRefusedError, match=r"not root.*maps to account 'asmith'"):
        as_alice.resolve("asmith", node="n1")


# -- the permission walk -------------------------------------------------------------


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Reachable by others, unlike pytest's: the walk starts from ``/``."""
    with reachable_directory() as path:
        yield path


STRANGER = RunAccount(name="stranger", uid=54321, gid=54321, groups=(54321,), home="/")


def tree(tmp_path: Path) -> Path:
    """``tmp_path/open/private/data``: open 0o755, private 0o700, data 0o644."""
    opened = tmp_path / "open"
    private = opened / "private"
    private.mkdir(parents=True)
    (private / "data").write_text("x")
    opened.chmod(0o755)
    private.chmod(0o700)
    (private / "data").chmod(0o644)
    return private / "data"


def test_a_directory_on_the_way_without_search_permission_is_named(tmp_path: Path) -> None:
    data = tree(tmp_path)

    why = account_may_access(data, STRANGER, READ)

    assert why == f"account 'stranger' may not enter {data.parent}"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files away (chown) needs root")
def test_group_bits_count_for_members_and_owner_bits_for_the_owner(tmp_path: Path) -> None:
    data = tree(tmp_path)
    private = data.parent
    os.chown(private, 54321, 0)

    assert account_may_access(data, STRANGER, READ) is None
    assert account_may_access(data, STRANGER, WRITE) == (
        f"account 'stranger' lacks w permission on {data}"
    )
    os.chown(private, 0, 4242)
    private.chmod(0o750)
    member = RunAccount(name="member", uid=777, gid=777, groups=(777, 4242), home="/")
    assert account_may_access(data, member, READ) is None
    assert account_may_access(data, STRANGER, READ) is not None


def test_reading_a_directory_needs_search_too(tmp_path: Path) -> None:
    listing_only = tmp_path / "listing-only"
    listing_only.mkdir()
    listing_only.chmod(0o744)

    assert account_may_access(listing_only, STRANGER, READ) == (
        f"account 'stranger' lacks rx permission on {listing_only}"
    )
    listing_only.chmod(0o755)
    assert account_may_access(listing_only, STRANGER, READ | EXECUTE) is None


def test_a_symlink_is_judged_by_where_it_leads(tmp_path: Path) -> None:
    data = tree(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(data)

    assert account_may_access(link, STRANGER, READ) == (
        f"account 'stranger' may not enter {data.parent}"
    )


def test_root_reaches_everything_and_a_missing_path_is_said_so(tmp_path: Path) -> None:
    root = RunAccount(name="root", uid=0, gid=0, groups=(0,), home="/root")

    assert account_may_access(tree(tmp_path), root, READ | WRITE) is None
    assert "cannot be reached" in (account_may_access(tmp_path / "nope", STRANGER, READ) or "")
