"""A Raft message whose term or index the store could not hold is refused as
undecodable. The RPC fuzzer's vote at term 2**64-1 made saving Raft's hard state
overflow SQLite's integers, which stopped the daemon."""

from __future__ import annotations

import pytest

from murmur.node.control.consensus.wire import MAX_WIRE_NUMBER, WireError, from_wire
from murmur.v1 import node_pb2

BEYOND = (MAX_WIRE_NUMBER + 1, 2**63, 2**64 - 1)


@pytest.mark.parametrize("number", BEYOND)
@pytest.mark.parametrize(
    "build",
    [
        lambda n: node_pb2.RaftRequest(vote=node_pb2.RaftVote(term=n, candidate="x")),
        lambda n: node_pb2.RaftRequest(
            vote=node_pb2.RaftVote(term=1, last_log=node_pb2.RaftLogPosition(term=1, index=n))
        ),
        lambda n: node_pb2.RaftRequest(append=node_pb2.RaftAppend(term=1, commit=n)),
        lambda n: node_pb2.RaftRequest(
            append=node_pb2.RaftAppend(term=1, entries=[node_pb2.RaftEntry(term=1, index=n)])
        ),
        lambda n: node_pb2.RaftRequest(
            append_answer=node_pb2.RaftAppendAnswer(term=1, match_index=n)
        ),
        lambda n: node_pb2.RaftRequest(
            install_snapshot=node_pb2.RaftInstallSnapshot(
                term=1, last=node_pb2.RaftLogPosition(term=n, index=1)
            )
        ),
    ],
    ids=["vote-term", "vote-last-index", "commit", "entry-index", "match-index", "snapshot"],
)
def test_numbers_beyond_the_store_are_refused(build: object, number: int) -> None:
    with pytest.raises(WireError, match=f"is {number}, beyond"):
        from_wire(build(number))  # type: ignore[operator]


def test_the_largest_accepted_term_still_decodes() -> None:
    message = from_wire(
        node_pb2.RaftRequest(vote=node_pb2.RaftVote(term=MAX_WIRE_NUMBER, candidate="x"))
    )
    assert message.term == MAX_WIRE_NUMBER
