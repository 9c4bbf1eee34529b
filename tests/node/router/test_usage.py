"""Counting what API keys used: the ``usage`` of answers read as they pass (a stream's
last usage chunk, however its bytes are cut), counts flushed into a real control
state once each even when a flush is retried, and the key table a router off the
log pulls from a voter."""

from __future__ import annotations

import json

import pytest

from murmur.node.control.consensus.leadership import Leadership
from murmur.node.control.queue.api_keys import ApiKeyTable, hashes_answer, secret_sha256
from murmur.node.control.queue.commands import Command, CreateApiKey, RevokeApiKey, encode
from murmur.node.control.queue.results import ApplyResult
from murmur.node.control.queue.state import ControlState
from murmur.node.errors import InvalidArgumentError, UnavailableError
from murmur.node.router.key_sync import KeyBookSync
from murmur.node.router.usage import (
    MAX_LINE_BYTES,
    StreamUsageScanner,
    TailUsageScanner,
    UsageCounter,
    usage_of_answer,
)
from murmur.node.router.usage_flush import UsageFlusher
from murmur.v1 import apikeys_pb2

KEY = "0123456789ab"
OTHER = "ba9876543210"


def stream(*events: object, crlf: bool = False) -> bytes:
    end = "\r\n" if crlf else "\n"
    text = "".join(f"data: {json.dumps(event)}{end}{end}" for event in events)
    return (text + f"data: [DONE]{end}{end}").encode()


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": 0}


def test_the_last_usage_of_a_stream_counts_however_its_bytes_are_cut() -> None:
    data = stream(
        {"choices": [{"delta": {"content": "hello"}}], "usage": None},
        {"choices": [{"delta": {"content": "usage"}}]},  # the word, not the field
        {"choices": [], "usage": usage(3, 1)},  # vLLM's continuous usage: a running count
        {"choices": [], "usage": usage(12, 34)},
    )
    for size in (1, 2, 7, 64, len(data)):
        scanner = StreamUsageScanner()
        for start in range(0, len(data), size):
            scanner.feed(data[start : start + size])
        assert scanner.finish() == (12, 34), size


def test_stream_usage_in_crlf_lines_without_a_last_newline_or_none_at_all() -> None:
    scanner = StreamUsageScanner()
    scanner.feed(stream({"choices": [], "usage": usage(5, 6)}, crlf=True))
    assert scanner.finish() == (5, 6)
    scanner = StreamUsageScanner()
    scanner.feed(b'data: {"usage": {"prompt_tokens": 1, "completion_tokens": 2}}')
    assert scanner.finish() == (1, 2)
    scanner = StreamUsageScanner()
    scanner.feed(stream({"choices": [{"delta": {"content": "x"}}]}))
    assert scanner.finish() is None


@pytest.mark.parametrize(
    "bad",
    [
        {"usage": {"prompt_tokens": -1, "completion_tokens": 2}},
        {"usage": {"prompt_tokens": "5", "completion_tokens": 2}},
        {"usage": {"prompt_tokens": True, "completion_tokens": 2}},
        {"usage": [1, 2]},
    ],
    ids=["negative", "string", "bool", "not-an-object"],
)
def test_a_usage_that_is_not_counts_counts_nothing(bad: object) -> None:
    scanner = StreamUsageScanner()
    scanner.feed(stream(bad))
    assert scanner.finish() is None
    assert usage_of_answer(json.dumps(bad).encode()) is None


def test_a_line_too_long_is_skipped_not_held() -> None:
    scanner = StreamUsageScanner()
    scanner.feed(b'data: {"usage": "' + b"x" * (MAX_LINE_BYTES + 10))
    scanner.feed(b"x" * 100)
    scanner.feed(b'"}\n\n' + stream({"choices": [], "usage": usage(1, 1)}))
    assert scanner.finish() == (1, 1)


def test_usage_of_a_whole_answer_and_of_a_large_one_read_in_pieces() -> None:
    answer = {"object": "chat.completion", "choices": [], "usage": usage(9, 4)}
    assert usage_of_answer(json.dumps(answer).encode()) == (9, 4)
    assert usage_of_answer(b"not json") is None
    embeddings = {"data": [{"embedding": [0.5] * 100_000}], "usage": {"prompt_tokens": 70}}
    data = json.dumps(embeddings).encode()
    tail = TailUsageScanner()
    for start in range(0, len(data), 65536):
        tail.feed(data[start : start + 65536])
    assert tail.finish() == (70, 0)


class Log:
    """A control state as the leader's commit would apply to it."""

    def __init__(self) -> None:
        self.state = ControlState()
        self.index = 0

    def apply(self, command: Command) -> ApplyResult:
        self.index += 1
        return self.state.apply(1, self.index, encode(command))

    async def commit(self, command: Command) -> None:
        error = self.apply(command).exception()
        if error is not None:
            raise error


async def test_a_flush_is_one_command_and_a_retried_one_counts_once() -> None:
    log = Log()
    for key_id, name in ((KEY, "eval"), (OTHER, "ci")):
        log.apply(CreateApiKey(key_id, name, "alice", secret_sha256("s"), (), 0, 0, 1))
    counter = UsageCounter()
    commits: list[Command] = []
    lose_the_answer = [True]

    async def commit(command: Command) -> None:
        commits.append(command)
        await log.commit(command)
        if lose_the_answer[0]:  # committed, but the answer never came back
            lose_the_answer[0] = False
            raise UnavailableError("no leader could answer within 5 s")

    flusher = UsageFlusher(counter=counter, commit=commit, origin="node-1")
    assert await flusher.flush_once()  # nothing counted: nothing sent
    assert commits == []
    for tokens in ((5, 4), (5, 4), None):
        counter.add(KEY, tokens)
    counter.add(OTHER, (1, 1))
    assert not await flusher.flush_once()
    counter.add(KEY, (2, 2))  # counted meanwhile: goes in the next flush
    assert await flusher.flush_once()
    assert len(commits) == 3  # the first sent twice, as it was, then the newer counts
    assert commits[0] == commits[1]
    key, other = log.state.api_keys.get(KEY), log.state.api_keys.get(OTHER)
    assert key is not None
    assert other is not None
    assert (key.requests, key.prompt_tokens, key.completion_tokens) == (4, 12, 10)
    assert (other.requests, other.prompt_tokens, other.completion_tokens) == (1, 1, 1)
    assert flusher.flushed == 2
    assert len(counter) == 0


async def test_a_flush_the_state_refuses_is_dropped() -> None:
    counter = UsageCounter()
    counter.add(KEY, (1, 1))

    async def commit(command: Command) -> None:
        raise InvalidArgumentError("at most 2000 keys per usage flush")

    flusher = UsageFlusher(counter=counter, commit=commit, origin="node-1")
    assert await flusher.flush_once()
    assert flusher.flushed == 0


async def test_a_router_off_the_log_pulls_the_table_from_the_leader() -> None:
    voter = Log()
    voting = [False]
    asked: list[tuple[str, int]] = []

    async def fetch(address: str, known: int) -> apikeys_pb2.ListApiKeyHashesResponse:
        asked.append((address, known))
        return hashes_answer(voter.state.api_keys, known)

    leader = [""]
    sync = KeyBookSync(
        table=lambda: ApiKeyTable(),  # this node's own, never current: not a voter
        is_voter=lambda: voting[0],
        leadership=lambda: Leadership("n1", 3, ("n1",), leader[0]),
        fetch=fetch,
    )
    assert not sync.book().known
    assert not await sync.pull_once()  # no leader known yet
    leader[0] = "10.0.0.1:7070"
    assert await sync.pull_once()
    assert sync.book().known
    assert not sync.book().keys
    voter.apply(CreateApiKey(KEY, "eval", "alice", secret_sha256("s"), ("m",), 5, 0, 1))
    assert await sync.pull_once()
    assert set(sync.book().keys) == {KEY}
    assert sync.book().keys[KEY].models == frozenset({"m"})
    revision = sync.book().revision
    assert await sync.pull_once()  # unchanged: the same book
    assert asked[-1] == ("10.0.0.1:7070", revision)
    voter.apply(RevokeApiKey(KEY, "alice", False, 2))
    assert await sync.pull_once()
    assert sync.book().keys[KEY].revoked
    voting[0] = True  # a voter reads its own replica
    assert sync.book().keys == {}
