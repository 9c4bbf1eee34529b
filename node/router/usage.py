"""What each API key used on this router: requests, and tokens from the answers.

Tokens are the replica's own count, read from the ``usage`` object OpenAI-style
servers put in an answer: in the JSON of an answer that is not a stream, and in a
stream's last chunk that carries one (OpenAI, vLLM and SGLang send it when the
request asks ``"stream_options": {"include_usage": true}``; the router does not
add that to a request, since the extra chunk, with no choices, breaks clients that
did not ask for it). The answer passes to the client as it comes: the scanners see
each piece after it was sent, keep only the last incomplete line (a stream) or the
last ``TAIL_BYTES`` (a large JSON answer), and parse only lines that mention
``"usage"``.

Counts wait here until the next flush into the control log (node/router/usage_flush.py).
Memory is bounded: one entry per key used since the last flush, and only keys of
the cluster's table (at most ``api_keys.MAX_KEYS``) are counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_LINE_BYTES = 1024 * 1024
"""A stream's line longer than this is skipped (no usage chunk is that long), so a
replica that never sends a newline costs the scanner no more than this."""
TAIL_BYTES = 64 * 1024
"""Of a large answer that is not a stream, the scanner keeps this much of the end,
where OpenAI-style servers put ``usage``."""
_USAGE = b'"usage"'


@dataclass(slots=True)
class KeyUsage:
    """One key's counts since the last flush."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


Tokens = tuple[int, int]
"""(prompt tokens, completion tokens)."""


def tokens_of(usage: Any) -> Tokens | None:
    """The counts of a ``usage`` object; None when it is not one (absent, null, or
    with counts that are not non-negative integers). Embeddings have no completion."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", 0)
    completion = usage.get("completion_tokens", 0)
    for count in (prompt, completion):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            return None
    return prompt, completion


def usage_of_answer(body: bytes) -> Tokens | None:
    """The ``usage`` of a whole JSON answer, if it has one."""
    if _USAGE not in body:
        return None
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return tokens_of(answer.get("usage")) if isinstance(answer, dict) else None


class StreamUsageScanner:
    """Finds the last ``usage`` in a stream of server-sent events, fed piece by piece
    as the pieces pass to the client."""

    def __init__(self) -> None:
        self._partial = b""
        self._skipping = False
        """In a line longer than ``MAX_LINE_BYTES``: dropped up to its end."""
        self.tokens: Tokens | None = None

    def feed(self, data: bytes) -> None:
        cut = data.rfind(b"\n")
        if cut < 0:
            self._keep(data)
            return
        head, rest = data[: cut + 1], data[cut + 1 :]
        if self._skipping:
            head = head[head.find(b"\n") + 1 :]
            self._skipping = False
        lines = self._partial + head
        self._partial = b""
        self._keep(rest)
        if _USAGE in lines:
            for line in lines.splitlines():
                self._read(line)

    def _keep(self, data: bytes) -> None:
        if self._skipping:
            return
        if len(self._partial) + len(data) > MAX_LINE_BYTES:
            self._partial, self._skipping = b"", True
            return
        self._partial += data

    def finish(self) -> Tokens | None:
        """The counts once the stream ended (a last line with no newline counts too)."""
        if self._partial and not self._skipping:
            self._read(self._partial)
            self._partial = b""
        return self.tokens

    def _read(self, line: bytes) -> None:
        if not line.startswith(b"data:") or _USAGE not in line:
            return
        try:
            event = json.loads(line[5:])
        except (ValueError, UnicodeDecodeError, RecursionError):
            return
        if isinstance(event, dict):
            tokens = tokens_of(event.get("usage"))
            if tokens is not None:
                self.tokens = tokens


class TailUsageScanner:
    """Finds ``usage`` at the end of a large JSON answer passed on in pieces (an
    embedding of many inputs), keeping only its last ``TAIL_BYTES``."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> None:
        self._tail = (self._tail + data)[-TAIL_BYTES:]

    def finish(self) -> Tokens | None:
        start = self._tail.rfind(_USAGE)
        if start < 0:
            return None
        text = self._tail[start + len(_USAGE) :].lstrip()
        if not text.startswith(b":"):
            return None
        try:
            usage, _ = json.JSONDecoder().raw_decode(text[1:].lstrip().decode())
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        return tokens_of(usage)


class UsageCounter:
    """Counts per key, until a flush takes them."""

    def __init__(self) -> None:
        self._counts: dict[str, KeyUsage] = {}

    def add(self, key_id: str, tokens: Tokens | None, *, requests: int = 1) -> None:
        counts = self._counts.get(key_id)
        if counts is None:
            counts = self._counts[key_id] = KeyUsage()
        counts.requests += requests
        if tokens is not None:
            counts.prompt_tokens += tokens[0]
            counts.completion_tokens += tokens[1]

    def take(self, limit: int) -> dict[str, KeyUsage]:
        """Up to ``limit`` keys' counts, removed from here (by key id)."""
        taken = {}
        for key_id in list(self._counts)[:limit]:
            taken[key_id] = self._counts.pop(key_id)
        return taken

    def __len__(self) -> int:
        return len(self._counts)
