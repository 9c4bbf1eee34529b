"""Join tokens in the control state: used once, cluster-wide, through any voter."""

from __future__ import annotations

from murmur.certs import hash_secret
from murmur.node.control.queue.commands import ConsumeJoinToken, CreateJoinToken, decode, encode
from murmur.node.control.queue.join_tokens import FORGET_AFTER_US
from murmur.node.control.queue.results import ErrorKind
from murmur.node.control.queue.state import ControlState

SECRET = hash_secret("s" * 43)
HOUR = 3600 * 1_000_000


def create(token_id: str = "abcdef012345", at: int = 0) -> CreateJoinToken:
    return CreateJoinToken(token_id, SECRET, "admin", at, at + HOUR)


def consume(
    name: str, token_id: str = "abcdef012345", secret: str = SECRET, at: int = 10
) -> ConsumeJoinToken:
    return ConsumeJoinToken(token_id, secret, name, "10.0.0.9:7070", at)


class Log:
    def __init__(self) -> None:
        self.state = ControlState()
        self.index = 0

    def apply(self, command: CreateJoinToken | ConsumeJoinToken):  # type: ignore[no-untyped-def]
        self.index += 1
        return self.state.apply(1, self.index, encode(command))


def test_commands_round_trip() -> None:
    for command in (create(), consume("gpu2")):
        assert decode(encode(command)) == command


def test_a_token_admits_one_node_only() -> None:
    log = Log()
    assert log.apply(create()).ok
    assert log.apply(consume("gpu2")).ok
    second = log.apply(consume("gpu3", at=20))
    assert second.error is ErrorKind.FAILED_PRECONDITION
    assert "already used by 'gpu2'" in second.message


def test_refusals_do_not_burn_the_token() -> None:
    log = Log()
    log.apply(create())
    assert log.apply(consume("gpu2", secret=hash_secret("x" * 43))).error is (
        ErrorKind.PERMISSION_DENIED
    )
    assert log.apply(consume("gpu2", token_id="ffffffffffff")).error is ErrorKind.NOT_FOUND
    assert log.apply(consume("gpu2")).ok


def test_expired_tokens_and_taken_names_are_refused() -> None:
    log = Log()
    log.apply(create())
    assert "expired" in log.apply(consume("gpu2", at=HOUR)).message
    log.apply(create("111111111111", at=HOUR))
    log.apply(create("222222222222", at=HOUR))
    assert log.apply(consume("gpu2", token_id="111111111111", at=HOUR + 1)).ok
    taken = log.apply(consume("gpu2", token_id="222222222222", at=HOUR + 2))
    assert "already joined" in taken.message


def test_a_snapshot_keeps_tokens_and_names() -> None:
    log = Log()
    log.apply(create())
    log.apply(consume("gpu2"))
    log.apply(create("333333333333"))
    restored = ControlState.from_snapshot(log.state.snapshot())
    assert restored.join_tokens.has_joined("gpu2")
    token = restored.join_tokens.get("abcdef012345")
    assert token is not None
    assert token.used_by == "gpu2"
    assert restored.snapshot() == log.state.snapshot()


def test_old_tokens_are_forgotten_but_names_stay() -> None:
    log = Log()
    log.apply(create())
    log.apply(consume("gpu2"))
    log.apply(create("444444444444", at=HOUR + FORGET_AFTER_US))
    assert log.state.join_tokens.get("abcdef012345") is None
    assert log.state.join_tokens.has_joined("gpu2")
    restored = ControlState.from_snapshot(log.state.snapshot())
    assert restored.join_tokens.has_joined("gpu2")
