"""The lab policy in the control state: applied when it parses, kept by snapshots."""

from __future__ import annotations

from murmur.node.control.queue.commands import SetLabPolicy, decode, encode
from murmur.node.control.queue.results import ErrorKind
from murmur.node.control.queue.state import ControlState
from murmur.scheduler.lab_policy import NO_LAB_POLICY

TEXT = '[groups.nlp]\nusers = ["alice"]\ngpus = 4\n'


def test_a_policy_is_applied_and_versioned_by_its_entry() -> None:
    state = ControlState()
    command = SetLabPolicy(TEXT, "admin", 7)
    assert decode(encode(command)) == command
    assert state.apply(1, 3, encode(command)).ok
    record = state.lab_policy_record
    assert record is not None
    assert (record.index, record.by, record.text) == (3, "admin", TEXT)
    group = state.lab_policy.group_of("alice")
    assert group is not None
    assert group.gpus == 4
    restored = ControlState.from_snapshot(state.snapshot())
    assert restored.lab_policy == state.lab_policy
    assert restored.lab_policy_record == record


def test_a_policy_that_does_not_parse_changes_nothing() -> None:
    state = ControlState()
    state.apply(1, 1, encode(SetLabPolicy(TEXT, "admin", 1)))
    refused = state.apply(1, 2, encode(SetLabPolicy("[groups.nlp]\ngpus = 'x'\n", "admin", 2)))
    assert refused.error is ErrorKind.INVALID
    assert "gpus must be a whole number" in refused.message
    assert state.lab_policy_record is not None
    assert state.lab_policy_record.index == 1


def test_an_empty_policy_goes_back_to_none() -> None:
    state = ControlState()
    state.apply(1, 1, encode(SetLabPolicy(TEXT, "admin", 1)))
    state.apply(1, 2, encode(SetLabPolicy("", "admin", 2)))
    assert state.lab_policy == NO_LAB_POLICY


def test_runs_that_end_record_gpu_seconds_for_their_user_and_group() -> None:
    from murmur.node.control.queue import AssignJob, ReportRun, SubmitJob
    from murmur.node.jobspec import states
    from murmur.scheduler.fair_share import DAY_US
    from tests.node.control.queue.builders import Log, spec

    log = Log()
    log.apply(SetLabPolicy(TEXT, "admin", 0))
    start = 10 * DAY_US
    log.apply(SubmitJob("j1", spec(gpus=2), "alice", "", start))
    log.apply(AssignJob("j1", "n1", "r1", 1, (0, 1), start))
    log.apply(ReportRun("j1", "r1", "n1", states.RUNNING, None, "", start))
    log.apply(ReportRun("j1", "r1", "n1", states.SUCCEEDED, 0, "", start + 90_000_000))
    # A run that never started used nothing.
    log.apply(SubmitJob("j2", spec(gpus=1), "bob", "", start))
    log.apply(AssignJob("j2", "n1", "r2", 1, (2,), start))
    log.apply(ReportRun("j2", "r2", "n1", states.FAILED, 1, "", start + 1))
    buckets = log.state.usage_buckets()
    assert [(b.user, b.group, b.day, b.gpu_seconds) for b in buckets] == [
        ("alice", "nlp", 10, 180.0)
    ]
    restored = ControlState.from_snapshot(log.state.snapshot())
    assert restored.usage_buckets() == buckets


def test_a_job_without_a_time_limit_gets_its_queues_default() -> None:
    from murmur.node.control.queue import SubmitJob
    from tests.node.control.queue.builders import Log, spec

    log = Log()
    policy = '[defaults]\ntime_limit = "24h"\n[queues.debug]\ntime_limit = "1h"\n'
    assert log.apply(SetLabPolicy(policy, "admin", 0)).ok
    log.apply(SubmitJob("plain", spec(), "alice", "", 1))
    log.apply(SubmitJob("debug", spec(queue="debug"), "alice", "", 1))
    own = spec(queue="debug")
    own.time_limit.FromSeconds(600)
    log.apply(SubmitJob("own", own, "alice", "", 1))
    limits = {
        job_id: log.state.job(job_id).spec.time_limit.ToSeconds()  # type: ignore[union-attr]
        for job_id in ("plain", "debug", "own")
    }
    assert limits == {"plain": 24 * 3600, "debug": 3600, "own": 600}


def test_a_usage_request_with_a_time_out_of_range_is_refused_not_crashed() -> None:
    """Found by the RPC fuzzer: GetUsage with `since` beyond the year 9999 ended in
    INTERNAL."""
    import pytest

    from murmur.node.control.queue.cluster_jobs import usage_since_us
    from murmur.node.errors import InvalidArgumentError
    from murmur.v1 import cluster_pb2

    request = cluster_pb2.GetUsageRequest()
    request.since.seconds = 2**62
    with pytest.raises(InvalidArgumentError, match="since is not a valid time"):
        usage_since_us(request)
    assert usage_since_us(cluster_pb2.GetUsageRequest()) == 0
