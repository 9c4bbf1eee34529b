"""Services in the control state: a replica is a job per slot that the state keeps
running; scale and delete cancel what is no longer wanted."""

from __future__ import annotations

from murmur.node.control.queue import AssignJob, ClusterJob, ControlState, ReportRun, encode
from murmur.node.control.queue.commands import CreateService, DeleteService, ScaleService
from murmur.node.control.queue.results import ErrorKind
from murmur.node.control.queue.services import HEALTHY_RUN_US, SERVICE_LABEL
from murmur.node.jobspec import states
from murmur.v1 import control_pb2, types_pb2
from tests.node.control.queue.builders import SECOND, Log, spec


def service_spec(
    name: str = "llama", replicas: int = 2, restart: str = ""
) -> types_pb2.ServiceSpec:
    return types_pb2.ServiceSpec(
        name=name, template=spec(gpus=1), replicas=replicas, model="llama-3-8b",
        aliases=["llama"], adapters={"sql": "/adapters/sql"}, restart=restart,
    )  # fmt: skip


def replicas(log: Log, name: str = "llama") -> list[ClusterJob]:
    record = log.state.service(name)
    assert record is not None
    jobs = [log.state.job(job_id) for job_id in record.replica_jobs]
    assert all(job is not None for job in jobs)
    return jobs  # type: ignore[return-value]


def run(log: Log, job: ClusterJob, node: str, at: int) -> str:
    run_id = f"r{log.index + 1}"
    assert log.apply(AssignJob(job.id, node, run_id, job.attempts + 1, (0,), at)).ok
    assert log.apply(ReportRun(job.id, run_id, node, states.RUNNING, None, "", at)).ok
    return run_id


def test_a_service_makes_one_replica_job_per_slot_owned_by_its_user() -> None:
    log = Log(ControlState(retry_backoff_base_us=SECOND))
    result = log.apply(CreateService(service_spec(), "alice", SECOND))
    assert result.ok
    jobs = replicas(log)
    assert [job.spec.replica_of.slot for job in jobs] == [0, 1]
    assert all(job.user == "alice" and job.state == states.PENDING for job in jobs)
    assert all(job.spec.labels[SERVICE_LABEL] == "llama" for job in jobs)
    assert list(jobs[0].spec.replica_of.models) == ["llama-3-8b", "llama", "llama-3-8b:sql"]
    assert {job.id for job in result.changed} == {job.id for job in jobs}
    again = log.apply(CreateService(service_spec(), "bob", 2 * SECOND))
    assert again.error is ErrorKind.FAILED_PRECONDITION


def test_a_replica_whose_run_ends_runs_again_after_a_backoff() -> None:
    log = Log(ControlState(retry_backoff_base_us=SECOND))
    log.apply(CreateService(service_spec(replicas=1), "alice", 0))
    (job,) = replicas(log)
    run_id = run(log, job, "n1", SECOND)
    assert log.apply(ReportRun(job.id, run_id, "n1", states.FAILED, 1, "", 3 * SECOND)).ok
    (again,) = replicas(log)
    assert again.id == job.id  # the same replica, its job back in the queue
    assert again.state == states.PENDING
    assert again.not_before_us == 4 * SECOND
    assert again.reason.startswith("restarting in 1s after: exited with code 1")
    # A healthy run (it lasted long) restarts after the first step only, however
    # many restarts came before; one that exits 0 restarts too (restart: always).
    run_id = run(log, again, "n1", 5 * SECOND)
    at = 5 * SECOND + HEALTHY_RUN_US
    assert log.apply(ReportRun(job.id, run_id, "n1", states.SUCCEEDED, 0, "", at)).ok
    (healthy,) = replicas(log)
    assert (healthy.state, healthy.not_before_us) == (states.PENDING, at + SECOND)


def test_on_failure_a_replica_that_succeeds_is_done() -> None:
    log = Log(ControlState(retry_backoff_base_us=SECOND))
    log.apply(CreateService(service_spec(replicas=1, restart="on-failure"), "alice", 0))
    (job,) = replicas(log)
    run_id = run(log, job, "n1", SECOND)
    assert log.apply(ReportRun(job.id, run_id, "n1", states.SUCCEEDED, 0, "", 2 * SECOND)).ok
    assert replicas(log)[0].state == states.SUCCEEDED


def test_scaling_down_cancels_the_highest_slots_and_up_makes_new_ones() -> None:
    log = Log(ControlState(retry_backoff_base_us=SECOND))
    log.apply(CreateService(service_spec(replicas=3), "alice", 0))
    first, second, third = replicas(log)
    run(log, third, "n1", SECOND)
    assert log.apply(ScaleService("llama", 1, "alice", False, 2 * SECOND)).ok
    assert [job.id for job in replicas(log)] == [first.id]
    gone_pending, gone_running = log.state.job(second.id), log.state.job(third.id)
    assert gone_pending is not None
    assert gone_pending.state == states.CANCELLED
    assert gone_running is not None
    assert gone_running.cancel_requested
    run_id = gone_running.runs[0].run_id
    log.apply(ReportRun(third.id, run_id, "n1", states.CANCELLED, None, "", 3 * SECOND))
    ended = log.state.job(third.id)
    assert ended is not None
    assert ended.state == states.CANCELLED
    assert log.apply(ScaleService("llama", 2, "alice", False, 4 * SECOND)).ok
    grown = replicas(log)
    assert len(grown) == 2
    assert grown[1].id not in (second.id, third.id)
    assert grown[1].spec.replica_of.slot == 1


def test_only_its_owner_or_an_admin_scales_or_deletes_a_service() -> None:
    log = Log()
    log.apply(CreateService(service_spec(), "alice", 0))
    assert log.apply(ScaleService("llama", 5, "bob", False, SECOND)).error is (
        ErrorKind.PERMISSION_DENIED
    )
    assert log.apply(DeleteService("llama", "bob", False, SECOND)).error is (
        ErrorKind.PERMISSION_DENIED
    )
    assert log.apply(DeleteService("nope", "alice", False, SECOND)).error is ErrorKind.NOT_FOUND
    jobs = replicas(log)
    assert log.apply(DeleteService("llama", "root", True, 2 * SECOND)).ok
    assert log.state.service("llama") is None
    assert all(log.state.job(job.id).state == states.CANCELLED for job in jobs)  # type: ignore[union-attr]


def test_a_snapshot_keeps_services_and_their_replicas() -> None:
    log = Log(ControlState(retry_backoff_base_us=SECOND))
    log.apply(CreateService(service_spec(), "alice", 0))
    job = replicas(log)[0]
    run_id = run(log, job, "n1", SECOND)
    data = log.state.snapshot()
    assert control_pb2.ControlSnapshot.FromString(data).format == 35
    restored = ControlState.from_snapshot(data, retry_backoff_base_us=SECOND)
    assert restored.services() == log.state.services()
    # The restored state restarts the replica as the first does.
    failed = encode(ReportRun(job.id, run_id, "n1", states.FAILED, 1, "", 2 * SECOND))
    log.apply_bytes(failed)
    restored.apply(log.term, log.index, failed)
    assert restored.jobs() == log.state.jobs()
    assert restored.job(job.id).state == states.PENDING  # type: ignore[union-attr]
