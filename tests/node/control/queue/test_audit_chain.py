"""The audit trail's hash chain: an edited, removed or reordered entry is found."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from murmur.node.control.queue.audit_chain import (
    GENESIS_HASH,
    AuditCall,
    ChainedAudit,
    canonical_bytes,
    extend,
    link_hash,
    verify,
)

ORIGIN = "node-2/abc"


def call(n: int, *, user: str = "max", result: str = "OK") -> AuditCall:
    return AuditCall(
        origin_id=n,
        node="node-2",
        time_us=1_700_000_000_000_000 + n,
        user=user,
        role="member",
        action="SubmitJob",
        target=f"job-{n}",
        result=result,
        detail="",
    )


def chain(count: int) -> list[ChainedAudit]:
    return extend(GENESIS_HASH, 0, ORIGIN, [call(n) for n in range(1, count + 1)])


def head_of(entries: list[ChainedAudit]) -> tuple[int, bytes]:
    return entries[-1].seq, entries[-1].hash


def test_an_intact_chain_verifies_up_to_the_log_head() -> None:
    entries = chain(5)
    count, head = head_of(entries)
    report = verify(entries, log_count=count, log_head=head)
    assert report.intact, report
    assert (report.entries, report.first_id, report.last_id, report.head) == (5, 1, 5, head)


def test_extending_in_two_steps_is_extending_once() -> None:
    first = extend(GENESIS_HASH, 0, ORIGIN, [call(1), call(2)])
    rest = extend(first[-1].hash, 2, ORIGIN, [call(3)])
    assert first + rest == chain(3)


def test_the_encoding_is_unambiguous_between_fields() -> None:
    # Moving characters between two fields must change the bytes (length prefixes).
    one = dataclasses.replace(call(1), user="ab", role="c")
    two = dataclasses.replace(call(1), user="a", role="bc")
    assert canonical_bytes(1, ORIGIN, one) != canonical_bytes(1, ORIGIN, two)


def test_an_edited_entry_is_found_at_its_place() -> None:
    entries = chain(6)
    count, head = head_of(entries)
    edited = dataclasses.replace(entries[2].call, result="PERMISSION_DENIED")
    entries[2] = dataclasses.replace(entries[2], call=edited)
    report = verify(entries, log_count=count, log_head=head)
    assert not report.intact
    assert report.bad_id == 3
    assert "does not match its hash" in report.problem
    assert report.entries == 2


def test_an_edit_with_a_recomputed_hash_breaks_the_next_entry() -> None:
    entries = chain(4)
    count, head = head_of(entries)
    edited = dataclasses.replace(entries[1].call, user="eve")
    entries[1] = ChainedAudit(2, ORIGIN, edited, link_hash(entries[0].hash, 2, ORIGIN, edited))
    report = verify(entries, log_count=count, log_head=head)
    assert (report.intact, report.bad_id) == (False, 3)


def test_a_consistent_rewrite_of_the_whole_copy_misses_the_log_head() -> None:
    original = chain(3)
    count, head = head_of(original)
    forged = extend(GENESIS_HASH, 0, ORIGIN, [call(1, user="eve"), call(2), call(3)])
    report = verify(forged, log_count=count, log_head=head)
    assert (report.intact, report.bad_id) == (False, 3)
    assert "head the control log holds" in report.problem


def test_a_removed_entry_is_found() -> None:
    entries = chain(5)
    count, head = head_of(entries)
    del entries[1]
    report = verify(entries, log_count=count, log_head=head)
    assert (report.intact, report.bad_id) == (False, 2)
    assert "missing" in report.problem


def test_a_removed_last_entry_is_found_against_the_log() -> None:
    entries = chain(5)
    count, head = head_of(entries)
    report = verify(entries[:-1], log_count=count, log_head=head)
    assert (report.intact, report.bad_id) == (False, 5)
    assert "entry 5 is missing" in report.problem


def test_reordered_entries_are_found() -> None:
    entries = chain(5)
    count, head = head_of(entries)
    entries[1], entries[2] = entries[2], entries[1]
    report = verify(entries, log_count=count, log_head=head)
    assert not report.intact
    assert report.bad_id == 2  # the first entry missing where it should be


def test_swapped_contents_under_the_same_numbers_are_found() -> None:
    entries = chain(5)
    count, head = head_of(entries)
    a, b = entries[1], entries[2]
    entries[1] = dataclasses.replace(b, seq=2)
    entries[2] = dataclasses.replace(a, seq=3)
    report = verify(entries, log_count=count, log_head=head)
    assert (report.intact, report.bad_id) == (False, 2)


def test_an_anchor_stands_for_the_entries_a_snapshot_compacted() -> None:
    entries = chain(8)
    count, head = head_of(entries)
    anchor = {4: entries[3].hash}
    held = entries[4:]
    assert verify(held, anchors=anchor, log_count=count, log_head=head).intact
    # Without the anchor, the missing start is reported.
    report = verify(held, log_count=count, log_head=head)
    assert (report.intact, report.bad_id) == (False, 1)
    # A wrong anchor does not make a chain verify.
    assert not verify(held, anchors={4: bytes(32)}, log_count=count, log_head=head).intact


def test_a_node_restored_at_the_head_holds_nothing_and_verifies() -> None:
    entries = chain(3)
    count, head = head_of(entries)
    report = verify([], anchors={count: head}, log_count=count, log_head=head)
    assert report.intact
    assert report.entries == 0


# --------------------------------------------------------------------- property

calls = st.builds(
    AuditCall,
    origin_id=st.integers(min_value=1, max_value=10**9),
    node=st.sampled_from(["node-1", "node-2", "node-3"]),
    time_us=st.integers(min_value=0, max_value=2**62),
    user=st.text(max_size=12),
    role=st.sampled_from(["admin", "member", "viewer", "node"]),
    action=st.sampled_from(["SubmitJob", "CancelJob", "IssueUserCertificate"]),
    target=st.text(max_size=20),
    result=st.sampled_from(["OK", "PERMISSION_DENIED", "NOT_FOUND"]),
    detail=st.text(max_size=40),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(calls, min_size=2, max_size=25),
    st.sampled_from(["edit", "remove", "swap"]),
    st.data(),
)
def test_any_single_tampering_is_detected(
    sequence: list[AuditCall], tampering: str, data: st.DataObject
) -> None:
    entries = extend(GENESIS_HASH, 0, ORIGIN, sequence)
    count, head = head_of(entries)
    assert verify(entries, log_count=count, log_head=head).intact
    at = data.draw(st.integers(min_value=0, max_value=len(entries) - 1), label="at")
    tampered = list(entries)
    if tampering == "edit":
        original = tampered[at].call
        changed = data.draw(calls.filter(lambda c: c != original), label="changed")
        tampered[at] = dataclasses.replace(tampered[at], call=changed)
    elif tampering == "remove":
        del tampered[at]
    else:
        other = data.draw(
            st.integers(min_value=0, max_value=len(entries) - 1).filter(
                lambda i: entries[i].call != entries[at].call
            ),
            label="other",
        )
        tampered[at], tampered[other] = tampered[other], tampered[at]
    report = verify(tampered, log_count=count, log_head=head)
    assert not report.intact
    assert 1 <= report.bad_id <= count
    assert report.bad_id <= at + 1 or tampering == "swap"
