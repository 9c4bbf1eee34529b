"""Gossip messages to bytes and back: a small, stable, versioned binary format.

The gRPC transport carries these bytes in a ``bytes`` field, so the format is ours
to keep stable. Layout: one byte of format version (``FORMAT_VERSION``), one byte
naming the message, then its fields in declaration order:

- integers are unsigned LEB128 varints (at most 64 bits);
- strings are a varint length then UTF-8; blobs a varint length then raw bytes;
- booleans and member states are one byte;
- a sequence is a varint count then its items; an update starts with a tag byte.

A new field or message means a new format version; a decoder refuses versions it
does not know instead of guessing. Decoding never trusts a length or a count
beyond the bytes actually present, so hostile input costs at most its own size.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

from murmur.node.gossip.errors import GossipDecodeError
from murmur.node.gossip.member import MemberState
from murmur.node.gossip.messages import (
    Ack,
    Alive,
    Dead,
    DigestEntry,
    FullState,
    Gossip,
    Leave,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPullRequest,
    PushPullResponse,
    PushPullStates,
    Suspect,
    Update,
)

FORMAT_VERSION = 1
_MAX_VARINT_BITS = 64

_STATE_CODES: dict[MemberState, int] = {
    MemberState.ALIVE: 0,
    MemberState.SUSPECT: 1,
    MemberState.DEAD: 2,
    MemberState.LEFT: 3,
}
_STATES_BY_CODE = {code: state for state, code in _STATE_CODES.items()}

_ALIVE, _SUSPECT, _DEAD, _LEAVE = 1, 2, 3, 4
(
    _PING,
    _ACK,
    _PING_REQ,
    _NACK,
    _GOSSIP,
    _PUSH_PULL_REQUEST,
    _PUSH_PULL_RESPONSE,
    _PUSH_PULL_STATES,
) = range(1, 9)


# --- encoding ---------------------------------------------------------------


def _put_uvarint(out: bytearray, value: int) -> None:
    if value < 0 or value.bit_length() > _MAX_VARINT_BITS:
        raise ValueError(f"gossip codec: integer {value} is outside 0 .. 2**64-1")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_blob(out: bytearray, value: bytes) -> None:
    _put_uvarint(out, len(value))
    out += value


def _put_str(out: bytearray, value: str) -> None:
    _put_blob(out, value.encode())


@lru_cache(maxsize=8192)
def encode_update(update: Update) -> bytes:
    """One update's bytes (cached: the same update is sent many times)."""
    out = bytearray()
    match update:
        case Alive():
            out.append(_ALIVE)
            _put_str(out, update.name)
            _put_uvarint(out, update.incarnation)
            _put_str(out, update.address)
            _put_blob(out, update.meta)
            _put_uvarint(out, update.meta_version)
        case Suspect():
            out.append(_SUSPECT)
            _put_str(out, update.name)
            _put_uvarint(out, update.incarnation)
            _put_str(out, update.accuser)
        case Dead():
            out.append(_DEAD)
            _put_str(out, update.name)
            _put_uvarint(out, update.incarnation)
            _put_str(out, update.accuser)
        case Leave():
            out.append(_LEAVE)
            _put_str(out, update.name)
            _put_uvarint(out, update.incarnation)
    return bytes(out)


def update_size(update: Update) -> int:
    """Encoded size of one update, as counted against a message's byte budget."""
    return len(encode_update(update))


def _put_updates(out: bytearray, updates: tuple[Update, ...]) -> None:
    _put_uvarint(out, len(updates))
    for update in updates:
        out += encode_update(update)


def _put_full_state(out: bytearray, state: FullState) -> None:
    _put_str(out, state.name)
    _put_str(out, state.address)
    _put_uvarint(out, state.incarnation)
    out.append(_STATE_CODES[state.state])
    _put_blob(out, state.meta)
    _put_uvarint(out, state.meta_version)
    _put_uvarint(out, state.meta_incarnation)


def _put_full_states(out: bytearray, states: tuple[FullState, ...]) -> None:
    _put_uvarint(out, len(states))
    for state in states:
        _put_full_state(out, state)


def encode(message: Message) -> bytes:
    """The wire form of ``message``.

    Raises:
        ValueError: an integer field is negative or above 2**64-1.
    """
    out = bytearray((FORMAT_VERSION,))
    match message:
        case Ping():
            out.append(_PING)
            _put_uvarint(out, message.seq)
            _put_str(out, message.target)
            _put_updates(out, message.updates)
        case Ack():
            out.append(_ACK)
            _put_uvarint(out, message.seq)
            _put_updates(out, message.updates)
        case PingReq():
            out.append(_PING_REQ)
            _put_uvarint(out, message.seq)
            _put_str(out, message.target)
            _put_str(out, message.target_address)
            _put_updates(out, message.updates)
        case Nack():
            out.append(_NACK)
            _put_uvarint(out, message.seq)
        case Gossip():
            out.append(_GOSSIP)
            _put_updates(out, message.updates)
        case PushPullRequest():
            out.append(_PUSH_PULL_REQUEST)
            _put_uvarint(out, len(message.digest))
            for entry in message.digest:
                _put_str(out, entry.name)
                _put_uvarint(out, entry.incarnation)
                out.append(_STATE_CODES[entry.state])
                _put_uvarint(out, entry.meta_version)
                _put_uvarint(out, entry.meta_incarnation)
            _put_full_states(out, message.states)
            out.append(1 if message.join else 0)
        case PushPullResponse():
            out.append(_PUSH_PULL_RESPONSE)
            _put_full_states(out, message.states)
            _put_uvarint(out, len(message.wanted))
            for name in message.wanted:
                _put_str(out, name)
        case PushPullStates():
            out.append(_PUSH_PULL_STATES)
            _put_full_states(out, message.states)
    return bytes(out)


def encoded_size(message: Message) -> int:
    """Size in bytes of ``message`` on the wire."""
    return len(encode(message))


# --- decoding ---------------------------------------------------------------

T = TypeVar("T")


class _Reader:
    """Reads primitives from a buffer, refusing to read past its end."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def byte(self) -> int:
        if self._pos >= len(self._data):
            raise GossipDecodeError("gossip message is truncated")
        value = self._data[self._pos]
        self._pos += 1
        return value

    def uvarint(self) -> int:
        value = 0
        shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift >= _MAX_VARINT_BITS + 7:
                raise GossipDecodeError("gossip message has an integer over 64 bits")
        if value.bit_length() > _MAX_VARINT_BITS:
            raise GossipDecodeError("gossip message has an integer over 64 bits")
        return value

    def blob(self) -> bytes:
        length = self.uvarint()
        if length > self.remaining:
            raise GossipDecodeError("gossip message is truncated (a field runs past its end)")
        value = self._data[self._pos : self._pos + length]
        self._pos += length
        return value

    def text(self) -> str:
        try:
            return self.blob().decode()
        except UnicodeDecodeError as exc:
            raise GossipDecodeError("gossip message has a string that is not UTF-8") from exc

    def flag(self) -> bool:
        value = self.byte()
        if value > 1:
            raise GossipDecodeError(f"gossip message has a boolean byte {value}")
        return value == 1

    def member_state(self) -> MemberState:
        code = self.byte()
        try:
            return _STATES_BY_CODE[code]
        except KeyError:
            raise GossipDecodeError(f"gossip message has an unknown member state {code}") from None

    def sequence(self, read_item: Callable[[_Reader], T]) -> tuple[T, ...]:
        count = self.uvarint()
        if count > self.remaining:  # every item takes at least one byte
            raise GossipDecodeError("gossip message is truncated (a list runs past its end)")
        return tuple(read_item(self) for _ in range(count))


def _read_update(reader: _Reader) -> Update:
    tag = reader.byte()
    if tag == _ALIVE:
        return Alive(
            reader.text(), reader.uvarint(), reader.text(), reader.blob(), reader.uvarint()
        )
    if tag == _SUSPECT:
        return Suspect(reader.text(), reader.uvarint(), reader.text())
    if tag == _DEAD:
        return Dead(reader.text(), reader.uvarint(), reader.text())
    if tag == _LEAVE:
        return Leave(reader.text(), reader.uvarint())
    raise GossipDecodeError(f"gossip message has an unknown update type {tag}")


def _read_full_state(reader: _Reader) -> FullState:
    return FullState(
        name=reader.text(),
        address=reader.text(),
        incarnation=reader.uvarint(),
        state=reader.member_state(),
        meta=reader.blob(),
        meta_version=reader.uvarint(),
        meta_incarnation=reader.uvarint(),
    )


def _read_digest_entry(reader: _Reader) -> DigestEntry:
    return DigestEntry(
        reader.text(), reader.uvarint(), reader.member_state(), reader.uvarint(), reader.uvarint()
    )


def _read_message(reader: _Reader, kind: int) -> Message:
    if kind == _PING:
        return Ping(reader.uvarint(), reader.text(), reader.sequence(_read_update))
    if kind == _ACK:
        return Ack(reader.uvarint(), reader.sequence(_read_update))
    if kind == _PING_REQ:
        return PingReq(
            reader.uvarint(), reader.text(), reader.text(), reader.sequence(_read_update)
        )
    if kind == _NACK:
        return Nack(reader.uvarint())
    if kind == _GOSSIP:
        return Gossip(reader.sequence(_read_update))
    if kind == _PUSH_PULL_REQUEST:
        digest = reader.sequence(_read_digest_entry)
        states = reader.sequence(_read_full_state)
        return PushPullRequest(digest, states, reader.flag())
    if kind == _PUSH_PULL_RESPONSE:
        return PushPullResponse(reader.sequence(_read_full_state), reader.sequence(_Reader.text))
    if kind == _PUSH_PULL_STATES:
        return PushPullStates(reader.sequence(_read_full_state))
    raise GossipDecodeError(f"gossip message has an unknown type {kind}")


def decode(data: bytes) -> Message:
    """The message encoded in ``data``.

    Raises:
        GossipDecodeError: ``data`` is truncated, has trailing bytes, or was written
            by a format version this one cannot read.
    """
    reader = _Reader(bytes(data))
    version = reader.byte()
    if version != FORMAT_VERSION:
        raise GossipDecodeError(
            f"gossip message format {version} is not supported (this node reads {FORMAT_VERSION})"
        )
    message = _read_message(reader, reader.byte())
    if reader.remaining:
        raise GossipDecodeError(f"gossip message has {reader.remaining} trailing bytes")
    return message
