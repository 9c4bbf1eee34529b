"""Raft's messages and log entries to and from their two other forms: the protobuf
of ``NodeService.Raft`` (proto/murmur/v1/node.proto) and the store's records.

The Raft machine (node/control/raft) knows neither form; this module is the one place
that maps them, so a field added to a message is added here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.message import Message as ProtoMessage

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
from murmur.storage import RaftEntryRecord, RaftSnapshotRecord
from murmur.v1 import node_pb2


class WireError(ValueError):
    """A Raft message from a peer that cannot be decoded (empty, unknown kind)."""


_KIND_TO_WIRE = {
    EntryKind.COMMAND: node_pb2.RAFT_ENTRY_KIND_COMMAND,
    EntryKind.NOOP: node_pb2.RAFT_ENTRY_KIND_NOOP,
    EntryKind.VOTERS: node_pb2.RAFT_ENTRY_KIND_VOTERS,
}
_KIND_FROM_WIRE = {wire: kind for kind, wire in _KIND_TO_WIRE.items()}


def _position(position: LogPosition) -> node_pb2.RaftLogPosition:
    return node_pb2.RaftLogPosition(term=position.term, index=position.index)


def _position_of(wire: node_pb2.RaftLogPosition) -> LogPosition:
    return LogPosition(wire.term, wire.index)


def entry_to_wire(entry: LogEntry) -> node_pb2.RaftEntry:
    return node_pb2.RaftEntry(
        term=entry.term,
        index=entry.index,
        kind=_KIND_TO_WIRE[entry.kind],
        data=entry.data,
        voters=sorted(entry.voters),
    )


def entry_from_wire(wire: node_pb2.RaftEntry) -> LogEntry:
    kind = _KIND_FROM_WIRE.get(wire.kind)
    if kind is None:
        raise WireError(f"raft entry {wire.index} has unknown kind {wire.kind}")
    return LogEntry(wire.term, wire.index, kind, wire.data, frozenset(wire.voters))


def to_wire(message: Message, *, from_address: str) -> node_pb2.RaftRequest:
    """The request that carries ``message``; answers go to ``from_address``."""
    request = node_pb2.RaftRequest(from_address=from_address)
    match message:
        case RequestVote() | PreVote():
            request.vote.CopyFrom(
                node_pb2.RaftVote(
                    term=message.term,
                    candidate=message.candidate,
                    last_log=_position(message.last_log),
                    pre_vote=isinstance(message, PreVote),
                )
            )
        case VoteResponse() | PreVoteResponse():
            request.vote_answer.CopyFrom(
                node_pb2.RaftVoteAnswer(
                    term=message.term,
                    voter=message.voter,
                    granted=message.granted,
                    pre_vote=isinstance(message, PreVoteResponse),
                )
            )
        case AppendEntries():
            request.append.CopyFrom(
                node_pb2.RaftAppend(
                    term=message.term,
                    leader=message.leader,
                    previous=_position(message.previous),
                    entries=[entry_to_wire(entry) for entry in message.entries],
                    commit=message.commit,
                )
            )
        case AppendResponse():
            request.append_answer.CopyFrom(
                node_pb2.RaftAppendAnswer(
                    term=message.term,
                    follower=message.follower,
                    success=message.success,
                    match_index=message.match_index,
                )
            )
        case InstallSnapshot():
            snapshot = message.snapshot
            request.install_snapshot.CopyFrom(
                node_pb2.RaftInstallSnapshot(
                    term=message.term,
                    leader=message.leader,
                    last=_position(snapshot.last),
                    voters=sorted(snapshot.voters),
                    data=snapshot.data,
                )
            )
    return request


MAX_WIRE_NUMBER = 2**62
"""Largest term or index taken from a peer. SQLite stores them as signed 64-bit
integers, and a node counts on from what it was told (a term one higher at its next
election): the RPC fuzzer's term of 2**64-1 made saving Raft's state fail, which
stopped the daemon."""


def _refuse_beyond_store(message: ProtoMessage, path: str = "raft request") -> None:
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            for item in value if field.is_repeated else (value,):
                _refuse_beyond_store(item, f"{path}.{field.name}")
        elif isinstance(value, int) and not isinstance(value, bool) and value > MAX_WIRE_NUMBER:
            raise WireError(f"{path}.{field.name} is {value}, beyond {MAX_WIRE_NUMBER}")


def from_wire(request: node_pb2.RaftRequest) -> Message:
    """The message a request carries.

    Raises:
        WireError: the request carries no message, an entry of an unknown kind, or a
            term or index beyond `MAX_WIRE_NUMBER`.
    """
    _refuse_beyond_store(request)
    match request.WhichOneof("message"):
        case "vote":
            vote = request.vote
            kind = PreVote if vote.pre_vote else RequestVote
            return kind(vote.term, vote.candidate, _position_of(vote.last_log))
        case "vote_answer":
            answer = request.vote_answer
            answer_kind = PreVoteResponse if answer.pre_vote else VoteResponse
            return answer_kind(answer.term, answer.voter, answer.granted)
        case "append":
            append = request.append
            return AppendEntries(
                append.term,
                append.leader,
                _position_of(append.previous),
                tuple(entry_from_wire(entry) for entry in append.entries),
                append.commit,
            )
        case "append_answer":
            reply = request.append_answer
            return AppendResponse(reply.term, reply.follower, reply.success, reply.match_index)
        case "install_snapshot":
            install = request.install_snapshot
            snapshot = Snapshot(_position_of(install.last), frozenset(install.voters), install.data)
            return InstallSnapshot(install.term, install.leader, snapshot)
    raise WireError("raft request carries no message")


def sender_of(message: Message) -> str:
    """The node that sent ``message``."""
    match message:
        case RequestVote() | PreVote():
            return message.candidate
        case VoteResponse() | PreVoteResponse():
            return message.voter
        case AppendEntries() | InstallSnapshot():
            return message.leader
        case AppendResponse():
            return message.follower


def entry_to_record(entry: LogEntry) -> RaftEntryRecord:
    return RaftEntryRecord(
        index=entry.index,
        term=entry.term,
        kind=entry.kind.value,
        data=entry.data,
        voters=tuple(sorted(entry.voters)),
    )


def entries_from_records(records: Iterable[RaftEntryRecord]) -> list[LogEntry]:
    return [
        LogEntry(
            record.term, record.index, EntryKind(record.kind), record.data, frozenset(record.voters)
        )
        for record in records
    ]


def snapshot_to_record(snapshot: Snapshot) -> RaftSnapshotRecord:
    return RaftSnapshotRecord(
        last_term=snapshot.last.term,
        last_index=snapshot.last.index,
        voters=tuple(sorted(snapshot.voters)),
        data=snapshot.data,
    )


def snapshot_from_record(record: RaftSnapshotRecord) -> Snapshot:
    return Snapshot(
        LogPosition(record.last_term, record.last_index), frozenset(record.voters), record.data
    )
