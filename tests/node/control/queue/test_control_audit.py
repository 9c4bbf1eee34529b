"""RecordAudit in the control log: every voter chains the same entries, retries are
skipped, snapshots carry the chain's head, and the queue does not notice."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.node.control.queue import ControlState, SubmitJob, decode, encode
from murmur.node.control.queue.audit_chain import GENESIS_HASH, AuditCall, verify
from murmur.node.control.queue.commands import MAX_AUDIT_CALLS, RecordAudit
from murmur.node.control.queue.state import SNAPSHOT_FORMAT_WITH_AUDIT
from murmur.v1 import control_pb2
from tests.node.control.queue.builders import Log, spec


def call(n: int, node: str = "node-2", *, user: str = "max", result: str = "OK") -> AuditCall:
    return AuditCall(n, node, 1_000 + n, user, "member", "SubmitJob", f"job-{n}", result, "")


def record(origin: str, *ids: int, node: str = "node-2") -> RecordAudit:
    return RecordAudit(origin, tuple(call(n, node) for n in ids))


def test_the_command_survives_its_bytes() -> None:
    command = RecordAudit("node-2/x", (call(1), call(2, result="PERMISSION_DENIED")))
    assert decode(encode(command)) == command


def test_calls_are_chained_in_log_order_and_come_out_for_the_store() -> None:
    log = Log()
    first = log.apply(record("node-2/a", 1, 2))
    second = log.apply(record("node-3/b", 1, node="node-3"))
    assert first.ok
    assert second.ok
    chained = [*first.audited, *second.audited]
    assert [entry.seq for entry in chained] == [1, 2, 3]
    assert [entry.call.node for entry in chained] == ["node-2", "node-2", "node-3"]
    count, head = log.state.audit_head()
    assert (count, head) == (3, chained[-1].hash)
    assert verify(chained, log_count=count, log_head=head).intact


def test_a_shipment_sent_again_is_recorded_once() -> None:
    log = Log()
    log.apply(record("node-2/a", 1, 2))
    again = log.apply(record("node-2/a", 1, 2, 3))  # the answer was lost: shipped again
    assert [entry.call.origin_id for entry in again.audited] == [3]
    assert log.apply(record("node-2/a", 2, 3)).audited == ()
    # Another incarnation of the node (a new outbox) starts its ids again.
    assert len(log.apply(record("node-2/b", 1)).audited) == 1
    assert log.state.audit_head()[0] == 4
    assert log.state.audit_origin_last("node-2/a") == 3


def test_a_malformed_shipment_changes_nothing() -> None:
    log = Log()
    assert not log.apply(RecordAudit("", (call(1),))).ok
    too_many = RecordAudit("n/a", tuple(call(n) for n in range(1, MAX_AUDIT_CALLS + 2)))
    assert not log.apply(too_many).ok
    assert log.state.audit_head() == (0, GENESIS_HASH)


def test_the_audit_trail_is_no_change_to_the_queue() -> None:
    log = Log()
    log.apply(SubmitJob("j1", spec(), "max", "k1", 10))
    changes = log.state.other_changes
    log.apply(record("node-2/a", 1))
    log.apply(SubmitJob("j2", spec(), "max", "k2", 11))
    assert log.state.other_changes == changes
    assert [job.id for job in log.state.submitted_since_change()] == ["j1", "j2"]


def test_a_snapshot_carries_the_head_and_the_origins() -> None:
    log = Log()
    log.apply(record("node-2/a", 1, 2))
    data = log.state.snapshot()
    message = control_pb2.ControlSnapshot.FromString(data)
    assert message.format == SNAPSHOT_FORMAT_WITH_AUDIT
    restored = ControlState.from_snapshot(data)
    assert restored.audit_head() == log.state.audit_head()
    assert restored.audit_restored == log.state.audit_head()
    assert restored.audit_origin_last("node-2/a") == 2
    # The next entries chain on from the restored head, as on the voter that applied them.
    after = Log(restored)
    after.index = log.index
    following = record("node-2/a", 2, 3)
    assert after.apply(following).audited == log.apply(following).audited


def test_a_state_without_audit_writes_the_old_snapshot_format() -> None:
    log = Log()
    log.apply(SubmitJob("j1", spec(), "max", "k1", 10))
    message = control_pb2.ControlSnapshot.FromString(log.state.snapshot())
    assert message.format == 1
    assert not message.HasField("audit")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["node-1/a", "node-2/b", "node-3/c"]),
            st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=6),
        ),
        min_size=1,
        max_size=12,
    ),
    st.integers(min_value=0, max_value=12),
)
def test_every_voter_holds_the_same_chain_replayed_or_restored(
    shipments: list[tuple[str, list[int]]], snapshot_at: int
) -> None:
    commands = [record(origin, *sorted(set(ids))) for origin, ids in shipments]
    replayed, other = Log(), Log()
    chain_a = [e for c in commands for e in replayed.apply(c).audited]
    chain_b = [e for c in commands for e in other.apply(c).audited]
    assert chain_a == chain_b
    assert replayed.state.snapshot() == other.state.snapshot()
    # A voter restored from a snapshot part way, then applying the rest, agrees.
    cut = min(snapshot_at, len(commands))
    early = Log()
    for command in commands[:cut]:
        early.apply(command)
    late = Log(ControlState.from_snapshot(early.state.snapshot()))
    late.index = early.index
    tail = [e for c in commands[cut:] for e in late.apply(c).audited]
    assert late.state.audit_head() == replayed.state.audit_head()
    assert tail == chain_a[len(chain_a) - len(tail) :]
    # And the chain is the one extend() computes over the fresh calls in order.
    fresh: list[AuditCall] = []
    last: dict[str, int] = {}
    for command in commands:
        for c in command.calls:
            if c.origin_id > last.get(command.origin, 0):
                fresh.append(c)
                last[command.origin] = c.origin_id
    assert [e.call for e in chain_a] == fresh
