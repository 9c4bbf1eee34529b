"""API keys in the control state: hashes only, names unique per owner, revocation by
owner or admin, usage summed once per flush, snapshots of format 36."""

from __future__ import annotations

import pytest

from murmur.node.control.queue.api_keys import (
    FORGET_AFTER_US,
    MAX_KEYS_PER_OWNER,
    hashes_answer,
    new_key,
    parse_key,
    secret_sha256,
)
from murmur.node.control.queue.commands import (
    ApiKeyUsageDelta,
    Command,
    CreateApiKey,
    RecordApiKeyUsage,
    RevokeApiKey,
    SubmitJob,
    decode,
    encode,
)
from murmur.node.control.queue.results import ApplyResult, ErrorKind
from murmur.node.control.queue.state import (
    SNAPSHOT_FORMAT,
    SNAPSHOT_FORMAT_WITH_API_KEYS,
    ControlState,
)
from tests.node.control.queue.builders import spec

DAY = 24 * 3600 * 1_000_000


def create(
    name: str = "eval",
    owner: str = "alice",
    *,
    key_id: str = "0123456789ab",
    secret: str = "s" * 43,
    models: tuple[str, ...] = (),
    rpm: int = 0,
    expires_at_us: int = 0,
    at: int = 1_000,
) -> CreateApiKey:
    return CreateApiKey(key_id, name, owner, secret_sha256(secret), models, rpm, expires_at_us, at)


def usage(
    *deltas: tuple[str, int, int, int], seq: int = 1, incarnation: str = "a1", at: int = 5_000
) -> RecordApiKeyUsage:
    return RecordApiKeyUsage(
        "node-1", incarnation, seq, tuple(ApiKeyUsageDelta(*d) for d in deltas), at
    )


class Log:
    """A control state fed command after command, as a voter applies its log."""

    def __init__(self) -> None:
        self.state = ControlState()
        self.entries: list[bytes] = []

    def apply(self, command: Command) -> ApplyResult:
        self.entries.append(encode(command))
        return self.state.apply(1, len(self.entries), self.entries[-1])


def test_commands_round_trip() -> None:
    for command in (
        create(models=("llama", "qwen"), rpm=60, expires_at_us=9_000),
        RevokeApiKey("0123456789ab", "alice", False, 7),
        usage(("0123456789ab", 3, 15, 12), ("ba9876543210", 1, 0, 0)),
    ):
        assert decode(encode(command)) == command


def test_a_key_is_made_once_and_only_its_hash_is_kept() -> None:
    key_id, secret, key = new_key()
    assert key == f"mur_{key_id}_{secret}"
    assert parse_key(key) == (key_id, secret)
    assert parse_key("sk-" + secret) is None
    assert parse_key(f"mur_{key_id}") is None
    log = Log()
    assert log.apply(create(key_id=key_id, secret=secret)).ok
    record = log.state.api_keys.get(key_id)
    assert record is not None
    assert record.secret_sha256 == secret_sha256(secret)
    for data in (*log.entries, log.state.snapshot()):
        assert secret.encode() not in data
        assert key.encode() not in data


def test_names_are_unique_per_owner_until_revoked() -> None:
    log = Log()
    assert log.apply(create()).ok
    taken = log.apply(create(key_id="111111111111"))
    assert taken.error is ErrorKind.ALREADY_EXISTS
    assert "already has an API key named 'eval'" in taken.message
    assert log.apply(create(owner="bob", key_id="222222222222")).ok  # another owner's
    assert log.apply(create(key_id="0123456789ab", name="other")).error is (
        ErrorKind.ALREADY_EXISTS  # the id is taken
    )
    assert log.apply(RevokeApiKey("0123456789ab", "alice", False, 2_000)).ok
    assert log.apply(create(key_id="333333333333", at=3_000)).ok
    found = log.state.api_keys.find("alice", "eval")
    assert found is not None
    assert found.id == "333333333333"


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (create(name="has space"), "key name"),
        (create(name=""), "key name"),
        (create(key_id="XYZ"), "12 lowercase hex"),
        (create(owner=""), "owner"),
        (create(models=("a", "a")), "twice"),
        (create(models=("",)), "empty"),
        (create(rpm=10_000_000), "rpm"),
        (create(expires_at_us=500, at=1_000), "expire before"),
    ],
    ids=["space", "empty-name", "bad-id", "no-owner", "model-twice", "empty-model", "rpm", "past"],
)
def test_bad_keys_are_refused_and_change_nothing(command: CreateApiKey, says: str) -> None:
    log = Log()
    result = log.apply(command)
    assert result.error is ErrorKind.INVALID
    assert says in result.message
    assert len(log.state.api_keys) == 0
    assert log.state.api_keys.revision == 0


def test_an_owner_holds_a_bounded_number_of_keys() -> None:
    log = Log()
    for n in range(MAX_KEYS_PER_OWNER):
        assert log.apply(create(name=f"k{n}", key_id=f"{n:012x}")).ok
    full = log.apply(create(name="one-more", key_id="ffffffffffff"))
    assert full.error is ErrorKind.FAILED_PRECONDITION
    assert log.apply(create(owner="bob", key_id="fffffffffffe")).ok


def test_the_owner_or_an_admin_revokes_a_key() -> None:
    log = Log()
    log.apply(create())
    created_at = log.state.api_keys.revision
    refused = log.apply(RevokeApiKey("0123456789ab", "bob", False, 2_000))
    assert refused.error is ErrorKind.PERMISSION_DENIED
    assert log.apply(RevokeApiKey("ffffffffffff", "root", True, 2_000)).error is (
        ErrorKind.NOT_FOUND
    )
    assert log.apply(RevokeApiKey("0123456789ab", "root", True, 2_000)).ok
    record = log.state.api_keys.get("0123456789ab")
    assert record is not None
    assert (record.revoked_at_us, record.revoked_by) == (2_000, "root")
    assert not record.usable(2_001)
    assert log.state.api_keys.revision > created_at
    revision = log.state.api_keys.revision
    assert log.apply(RevokeApiKey("0123456789ab", "alice", False, 3_000)).ok  # again: no change
    assert log.state.api_keys.revision == revision
    assert log.state.api_keys.get("0123456789ab") == record


def test_usage_adds_up_and_a_retried_flush_counts_once() -> None:
    log = Log()
    log.apply(create())
    log.apply(create(name="ci", key_id="111111111111"))
    revision = log.state.api_keys.revision
    assert log.apply(usage(("0123456789ab", 2, 10, 8), ("111111111111", 1, 5, 4))).ok
    assert log.apply(usage(("0123456789ab", 2, 10, 8), ("111111111111", 1, 5, 4))).ok  # retried
    assert log.apply(usage(("0123456789ab", 1, 5, 4), seq=2, at=6_000)).ok
    # The node restarted: its new process counts from 1 again.
    assert log.apply(usage(("0123456789ab", 1, 5, 4), incarnation="b2", at=7_000)).ok
    # A key forgotten (or never known) is skipped.
    assert log.apply(usage(("ffffffffffff", 9, 9, 9), seq=2, incarnation="b2")).ok
    key = log.state.api_keys.get("0123456789ab")
    other = log.state.api_keys.get("111111111111")
    assert key is not None
    assert other is not None
    assert (key.requests, key.prompt_tokens, key.completion_tokens) == (4, 20, 16)
    assert key.last_used_at_us == 7_000
    assert (other.requests, other.prompt_tokens, other.completion_tokens) == (1, 5, 4)
    assert log.state.api_keys.revision == revision  # usage does not move it
    assert log.apply(usage(("0123456789ab", 1, 1, 1), seq=0)).error is ErrorKind.INVALID


def test_api_key_commands_do_not_make_placement_look_again() -> None:
    log = Log()
    before = log.state.other_changes
    log.apply(create())
    log.apply(usage(("0123456789ab", 1, 1, 1)))
    log.apply(RevokeApiKey("0123456789ab", "alice", False, 2_000))
    assert log.state.other_changes == before


def test_ended_keys_are_forgotten_a_month_after_at_the_next_create() -> None:
    log = Log()
    log.apply(create(expires_at_us=DAY))
    log.apply(create(name="live", key_id="111111111111"))
    log.apply(create(name="other", key_id="222222222222", at=DAY + FORGET_AFTER_US - 1))
    assert log.state.api_keys.get("0123456789ab") is not None
    log.apply(create(name="later", key_id="333333333333", at=DAY + FORGET_AFTER_US))
    assert log.state.api_keys.get("0123456789ab") is None
    assert log.state.api_keys.get("111111111111") is not None


def test_a_snapshot_says_format_36_only_when_it_holds_keys() -> None:
    log = Log()
    log.apply(SubmitJob("j1", spec(), "alice", "", 1))
    plain = ControlState.from_snapshot(log.state.snapshot())
    assert _format(log.state.snapshot()) == SNAPSHOT_FORMAT
    assert plain.snapshot() == log.state.snapshot()
    log.apply(create(models=("llama",), rpm=30, expires_at_us=DAY))
    log.apply(usage(("0123456789ab", 3, 15, 12)))
    log.apply(create(name="gone", key_id="111111111111"))
    log.apply(RevokeApiKey("111111111111", "root", True, 9_000))
    data = log.state.snapshot()
    assert _format(data) == SNAPSHOT_FORMAT_WITH_API_KEYS
    restored = ControlState.from_snapshot(data)
    assert restored.snapshot() == data
    assert restored.api_keys.records() == log.state.api_keys.records()
    assert restored.api_keys.revision == log.state.api_keys.revision
    # The retry guard survives the snapshot too.
    index = log.state.applied_index
    restored.apply(1, index + 1, encode(usage(("0123456789ab", 3, 15, 12))))
    key = restored.api_keys.get("0123456789ab")
    assert key is not None
    assert key.requests == 3


def test_replay_and_a_snapshot_midway_give_the_same_state() -> None:
    log = Log()
    commands: list[Command] = [
        create(),
        create(name="ci", owner="bob", key_id="111111111111", rpm=5),
        usage(("0123456789ab", 2, 10, 8)),
        RevokeApiKey("111111111111", "bob", False, 3_000),
        usage(("0123456789ab", 1, 5, 4), ("111111111111", 1, 5, 4), seq=2),
        create(name="ci", owner="bob", key_id="222222222222", at=4_000),
    ]
    for command in commands:
        log.apply(command)
    replayed = ControlState()
    for index, data in enumerate(log.entries, start=1):
        replayed.apply(1, index, data)
    assert replayed.snapshot() == log.state.snapshot()
    for cut in range(len(log.entries) + 1):
        first = ControlState()
        for index, data in enumerate(log.entries[:cut], start=1):
            first.apply(1, index, data)
        rest = ControlState.from_snapshot(first.snapshot())
        for index, data in enumerate(log.entries[cut:], start=cut + 1):
            rest.apply(1, index, data)
        assert rest.snapshot() == log.state.snapshot(), cut


def test_a_router_pulls_the_table_without_usage_and_only_when_it_changed() -> None:
    log = Log()
    assert hashes_answer(log.state.api_keys, 0).unchanged  # no key ever made
    log.apply(create())
    log.apply(usage(("0123456789ab", 2, 10, 8)))
    table = log.state.api_keys
    answer = hashes_answer(table, 0)
    assert not answer.unchanged
    assert answer.revision == table.revision
    [key] = answer.keys
    assert key.secret_sha256 == secret_sha256("s" * 43)
    assert (key.requests, key.prompt_tokens) == (0, 0)
    assert hashes_answer(table, table.revision).unchanged


def _format(data: bytes) -> int:
    from murmur.v1 import control_pb2

    message = control_pb2.ControlSnapshot()
    message.ParseFromString(data)
    return message.format
