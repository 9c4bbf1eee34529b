"""ListJobs from the state: arrays folded unless asked, the filters the state has no
index for, and pages that may end inside an entry (an array's tasks, a batch)."""

from __future__ import annotations

import pytest

from murmur.node.control.queue import AssignJob, SubmitJob
from murmur.node.control.queue.arrays import ArrayRecord
from murmur.node.control.queue.commands import SubmitJobs
from murmur.node.control.queue.job_listing import (
    Entry,
    PageToken,
    listed,
    page_of,
    parse_page_token,
)
from murmur.v1 import cluster_pb2, types_pb2
from tests.node.control.queue.builders import SECOND, Log, spec


def names(entries: list[Entry]) -> list[str]:
    return [f"array {e.id}" if isinstance(e, ArrayRecord) else e.id for e in entries]


def state_with_an_array_and_a_sweep() -> Log:
    log = Log()
    log.apply(SubmitJob("a", spec(), "alice", "", 0))
    arr = spec()
    arr.array.indices = "0-2"
    log.apply(SubmitJob("arr", arr, "alice", "", 0))
    sweep = spec()
    sweep.project = "vision"
    sweep.array.sweep.add(name="lr", values=["1e-3", "3e-4"])
    log.apply(SubmitJob("sw", sweep, "bob", "", 0))
    log.apply(SubmitJob("z", spec(), "alice", "", 0))
    return log


def test_an_array_whose_every_task_matches_is_one_record() -> None:
    log = state_with_an_array_and_a_sweep()
    request = cluster_pb2.ListJobsRequest()
    assert names(listed(log.state, request)) == ["a", "array arr", "array sw", "z"]
    request.tasks = True
    assert names(listed(log.state, request))[:3] == ["a", "arr[0]", "arr[1]"]
    assert len(listed(log.state, request)) == 7


def test_tasks_matched_alone_are_listed_alone() -> None:
    log = state_with_an_array_and_a_sweep()
    assert log.apply(AssignJob("arr[1]", "n1", "r", 1, (), SECOND)).ok
    running = cluster_pb2.ListJobsRequest(states=[types_pb2.JOB_STATE_SCHEDULED])
    assert names(listed(log.state, running)) == ["arr[1]"]
    labelled = cluster_pb2.ListJobsRequest(labels={"lr": "3e-4"})
    assert names(listed(log.state, labelled)) == ["sw[1]"]
    by_project = cluster_pb2.ListJobsRequest(project="vision")
    assert names(listed(log.state, by_project)) == ["array sw"]
    by_ids = cluster_pb2.ListJobsRequest(ids=["z", "arr", "sw[0]"])
    assert names(listed(log.state, by_ids)) == ["array arr", "sw[0]", "z"]


def test_pages_may_end_inside_an_array_or_a_batch_and_go_on_from_there() -> None:
    log = state_with_an_array_and_a_sweep()
    log.apply(SubmitJobs(tuple(SubmitJob(f"b{n}", spec(), "alice", f"k{n}", 0) for n in range(3))))
    entries = listed(log.state, cluster_pb2.ListJobsRequest(tasks=True))
    seen: list[str] = []
    token = PageToken()
    while True:
        page, text = page_of(entries, token, 2)
        seen.extend(names(page))
        if not text:
            break
        token = parse_page_token(text)
    assert seen == names(entries)
    assert len(seen) == 10


def test_a_page_token_is_the_entry_and_how_far_into_it() -> None:
    assert parse_page_token("") == PageToken()
    assert parse_page_token("12") == PageToken(12, 0)
    assert parse_page_token("12:3") == PageToken(12, 3)
    assert PageToken(12, 3).text() == "12:3"
    with pytest.raises(ValueError, match="invalid literal"):
        parse_page_token("x")
    with pytest.raises(ValueError, match="is not one this node gave"):
        parse_page_token("-1")
