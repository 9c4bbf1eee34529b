"""Raft messages and entries survive the trip through protobuf and the store unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.node.control.consensus.wire import (
    WireError,
    entries_from_records,
    entry_to_record,
    from_wire,
    sender_of,
    snapshot_from_record,
    snapshot_to_record,
    to_wire,
)
from murmur.node.control.raft import (
    AppendEntries,
    AppendResponse,
    EntryKind,
    InstallSnapshot,
    LogEntry,
    LogPosition,
    Message,
    PreVote,
    PreVoteResponse,
    RequestVote,
    Snapshot,
    VoteResponse,
)
from murmur.v1 import node_pb2

names = st.sampled_from(["node-1", "node-2", "gpu-a.lab"])
counts = st.integers(min_value=0, max_value=2**40)
positions = st.builds(LogPosition, counts, counts)
voter_sets = st.frozensets(names, max_size=3)


@st.composite
def entries(draw: st.DrawFn) -> LogEntry:
    kind = draw(st.sampled_from(EntryKind))
    return LogEntry(
        term=draw(counts),
        index=draw(counts),
        kind=kind,
        data=draw(st.binary(max_size=64)) if kind is EntryKind.COMMAND else b"",
        voters=draw(voter_sets) if kind is EntryKind.VOTERS else frozenset(),
    )


messages = st.one_of(
    st.builds(RequestVote, counts, names, positions),
    st.builds(PreVote, counts, names, positions),
    st.builds(VoteResponse, counts, names, st.booleans()),
    st.builds(PreVoteResponse, counts, names, st.booleans()),
    st.builds(
        AppendEntries, counts, names, positions, st.lists(entries(), max_size=4).map(tuple), counts
    ),
    st.builds(AppendResponse, counts, names, st.booleans(), counts),
    st.builds(
        InstallSnapshot,
        counts,
        names,
        st.builds(Snapshot, positions, voter_sets, st.binary(max_size=64)),
    ),
)


@given(messages)
def test_every_message_round_trips_through_protobuf(message: Message) -> None:
    request = to_wire(message, from_address="10.0.0.1:4100")
    decoded = from_wire(node_pb2.RaftRequest.FromString(request.SerializeToString()))
    assert decoded == message
    assert request.from_address == "10.0.0.1:4100"
    assert sender_of(decoded) in ("node-1", "node-2", "gpu-a.lab")


@given(st.lists(entries(), max_size=5))
def test_entries_round_trip_through_store_records(log: list[LogEntry]) -> None:
    assert entries_from_records(entry_to_record(entry) for entry in log) == log


@given(st.builds(Snapshot, positions, voter_sets, st.binary(max_size=64)))
def test_snapshots_round_trip_through_store_records(snapshot: Snapshot) -> None:
    assert snapshot_from_record(snapshot_to_record(snapshot)) == snapshot


def test_a_request_without_a_message_is_refused() -> None:
    with pytest.raises(WireError, match="no message"):
        from_wire(node_pb2.RaftRequest(from_address="10.0.0.1:4100"))


def test_an_entry_of_unknown_kind_is_refused() -> None:
    request = node_pb2.RaftRequest(
        append=node_pb2.RaftAppend(term=1, leader="a", entries=[node_pb2.RaftEntry(kind=99)])
    )
    with pytest.raises(WireError, match="unknown kind"):
        from_wire(request)
