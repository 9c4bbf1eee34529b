"""The leader backfills by time limit: a running job's limit gives its node's shadow
time; a pending job whose limit ends by then may use the reserved node."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from murmur.node.control.leader.placement import plan_cluster, waiting_reasons
from murmur.node.control.queue import AssignJob, ReportRun, SubmitJob
from murmur.node.jobspec import states
from tests.node.control.leader.test_control_placement import offer
from tests.node.control.queue.builders import SECOND, Log, spec

HOUR = 3600 * SECOND


def limited(gpus: int, hours: float):  # type: ignore[no-untyped-def]
    job_spec = spec(gpus=gpus)
    job_spec.time_limit.CopyFrom(Duration(seconds=int(hours * 3600)))
    return job_spec


def test_a_short_job_runs_before_the_reserved_head_and_a_long_one_waits() -> None:
    log = Log()
    log.apply(SubmitJob("running", limited(6, 2), "u", "", 0))
    assert log.apply(AssignJob("running", "n1", "r0", 1, tuple(range(6)), SECOND)).ok
    log.apply(ReportRun("running", "r0", "n1", states.RUNNING, None, "", SECOND))
    log.apply(SubmitJob("head", spec(gpus=8), "u", "", 0))
    # At the head's start (2 h) n1 has 10 free, 2 more than the head needs: a job
    # may hold 2 GPUs past it, not 3.
    log.apply(SubmitJob("long", limited(3, 3), "u", "", 0))
    log.apply(SubmitJob("short", limited(1, 1), "u", "", 0))
    log.apply(SubmitJob("unlimited", spec(gpus=3), "u", "", 0))
    plan = plan_cluster(log.state, [offer("n1", 10)], 10 * SECOND, new_run_id=lambda: "r")
    assert [a.job_id for a in plan.assignments] == ["short"]
    reasons = waiting_reasons(plan)
    assert "behind job head" in reasons["long"][0]
    assert "reserved for it from" in reasons["long"][0]
    assert "behind job head" in reasons["unlimited"][0]
