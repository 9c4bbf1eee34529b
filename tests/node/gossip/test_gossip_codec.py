"""The wire format: every message round-trips; hostile bytes only ever raise
GossipDecodeError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.node.gossip import (
    Ack,
    Alive,
    Dead,
    DigestEntry,
    FullState,
    Gossip,
    GossipDecodeError,
    Leave,
    MemberState,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPullRequest,
    PushPullResponse,
    PushPullStates,
    Suspect,
    Update,
    decode,
    encode,
    encoded_size,
)
from murmur.node.gossip.codec import FORMAT_VERSION, update_size

names = st.text(max_size=20)
counters = st.integers(0, 2**64 - 1)
blobs = st.binary(max_size=64)
states = st.sampled_from(MemberState)

updates: st.SearchStrategy[Update] = st.one_of(
    st.builds(Alive, names, counters, names, blobs, counters),
    st.builds(Suspect, names, counters, names),
    st.builds(Dead, names, counters, names),
    st.builds(Leave, names, counters),
)
update_lists = st.lists(updates, max_size=5).map(tuple)
full_states = st.builds(FullState, names, names, counters, states, blobs, counters, counters)
digest_entries = st.builds(DigestEntry, names, counters, states, counters, counters)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Ping, counters, names, update_lists),
    st.builds(Ack, counters, update_lists),
    st.builds(PingReq, counters, names, names, update_lists),
    st.builds(Nack, counters),
    st.builds(Gossip, update_lists),
    st.builds(
        PushPullRequest,
        st.lists(digest_entries, max_size=5).map(tuple),
        st.lists(full_states, max_size=3).map(tuple),
        st.booleans(),
    ),
    st.builds(
        PushPullResponse,
        st.lists(full_states, max_size=3).map(tuple),
        st.lists(names, max_size=3).map(tuple),
    ),
    st.builds(PushPullStates, st.lists(full_states, max_size=3).map(tuple)),
)


@given(messages)
def test_every_message_round_trips(message: Message) -> None:
    data = encode(message)
    assert decode(data) == message
    assert encoded_size(message) == len(data)


@given(updates)
def test_update_sizes_add_up_inside_a_gossip_message(update: Update) -> None:
    # version + type + count (1 byte for < 128 updates) + the update itself
    assert encoded_size(Gossip((update,))) == 3 + update_size(update)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_the_codec_error(data: bytes) -> None:
    with contextlib.suppress(GossipDecodeError):
        decode(data)


@given(messages, st.data())
def test_truncated_messages_are_refused(message: Message, data: st.DataObject) -> None:
    encoded = encode(message)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(GossipDecodeError):
        decode(encoded[:cut])


def test_the_encoding_is_compact() -> None:
    ping = Ping(7, "node-0001", (Suspect("node-0002", 3, "node-0001"),))
    assert len(encode(ping)) < 40


def test_an_unknown_format_version_is_refused_with_both_versions_named() -> None:
    data = bytes([FORMAT_VERSION + 1]) + encode(Nack(1))[1:]
    with pytest.raises(
        GossipDecodeError, match=f"format {FORMAT_VERSION + 1}.*reads {FORMAT_VERSION}"
    ):
        decode(data)


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(GossipDecodeError, match="trailing"):
        decode(encode(Nack(1)) + b"\x00")


def test_a_count_larger_than_the_message_is_refused_without_allocating() -> None:
    huge_count = bytes([FORMAT_VERSION, 5]) + b"\xff\xff\xff\xff\x0f"
    with pytest.raises(GossipDecodeError, match="truncated"):
        decode(huge_count)


def test_integers_over_64_bits_are_refused() -> None:
    data = bytes([FORMAT_VERSION, 4]) + b"\xff" * 10 + b"\x01"
    with pytest.raises(GossipDecodeError, match="64 bits"):
        decode(data)


def test_negative_integers_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="outside"):
        encode(Nack(-1))


def test_strings_must_be_utf8() -> None:
    data = bytes([FORMAT_VERSION, 1, 1, 2]) + b"\xff\xfe" + b"\x00"
    with pytest.raises(GossipDecodeError, match="UTF-8"):
        decode(data)
