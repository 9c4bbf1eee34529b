"""Services in the control state: a replica is a job per slot that the state keeps
running; scale and delete cancel what is no longer wanted."""

from __future__ import annotations

from murmur.node.control.leader.rollout import next_roll
from murmur.node.control.queue import AssignJob, ClusterJob, ControlState, ReportRun, encode
from murmur.node.control.queue.commands import (
    CreateService,
    DeleteService,
    RollReplica,
    ScaleService,
    SetNodeDrain,
    UpdateService,
    decode,
)
from murmur.node.control.queue.results import ErrorKind
from murmur.node.control.queue.services import (
    HEALTHY_RUN_US,
    SERVICE_LABEL,
    replica_revision,
    replica_spec,
)
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


def updated(spec: types_pb2.ServiceSpec, command: str) -> types_pb2.ServiceSpec:
    new = types_pb2.ServiceSpec()
    new.CopyFrom(spec)
    del new.template.command[:]
    new.template.command.append(command)
    return new


def test_an_update_raises_the_revision_and_leaves_the_replicas_to_the_leader() -> None:
    log = Log(ControlState(retry_backoff_base_us=SECOND))
    log.apply(CreateService(service_spec(), "alice", 0))
    before = replicas(log)
    assert all(replica_revision(job.spec) == 1 for job in before)
    assert log.apply(UpdateService(updated(service_spec(), "v2"), "bob", False, SECOND)).error is (
        ErrorKind.PERMISSION_DENIED
    )
    new = updated(service_spec(), "v2")
    new.replicas = 0  # keeps the count
    assert log.apply(UpdateService(new, "alice", False, SECOND)).ok
    record = log.state.service("llama")
    assert record is not None
    assert (record.revision, record.spec.replicas) == (2, 2)
    assert replicas(log) == before  # nothing replaced in the update's own entry
    # The same spec again is no new revision (a retried request).
    assert log.apply(UpdateService(new, "alice", False, 2 * SECOND)).ok
    assert log.state.service("llama").revision == 2  # type: ignore[union-attr]


def test_rolling_replaces_one_slot_and_refuses_a_stale_proposal() -> None:
    log = Log(ControlState(retry_backoff_base_us=SECOND))
    log.apply(CreateService(service_spec(), "alice", 0))
    first, second = replicas(log)
    run_id = run(log, first, "n1", SECOND)
    log.apply(UpdateService(updated(service_spec(), "v2"), "alice", False, 2 * SECOND))
    # A proposal made before the update (revision 1) changes nothing.
    assert log.apply(RollReplica("llama", 0, 1, first.id, 3 * SECOND)).error is (
        ErrorKind.FAILED_PRECONDITION
    )
    result = log.apply(RollReplica("llama", 0, 2, first.id, 3 * SECOND))
    assert result.ok
    new_first, kept = replicas(log)
    assert kept == second
    assert new_first.id != first.id
    assert (new_first.spec.replica_of.revision, list(new_first.spec.command)) == (2, ["v2"])
    old = log.state.job(first.id)
    assert old is not None
    assert old.cancel_requested
    # Its run ends as a cancel: the old replica does not restart.
    log.apply(ReportRun(first.id, run_id, "n1", states.CANCELLED, None, "", 4 * SECOND))
    assert log.state.job(first.id).state == states.CANCELLED  # type: ignore[union-attr]
    # The same roll again (a second leader's, or a retry) is refused.
    assert log.apply(RollReplica("llama", 0, 2, first.id, 5 * SECOND)).error is (
        ErrorKind.FAILED_PRECONDITION
    )
    # A snapshot of an updated service says format 37 and keeps the revision.
    data = log.state.snapshot()
    assert control_pb2.ControlSnapshot.FromString(data).format == 37
    restored = ControlState.from_snapshot(data, retry_backoff_base_us=SECOND)
    assert restored.services() == log.state.services()


def test_the_leader_rolls_one_replica_at_a_time_never_below_n_minus_1_ready() -> None:
    log = Log(ControlState(retry_backoff_base_us=SECOND))
    log.apply(CreateService(service_spec(replicas=3), "alice", 0))
    jobs = [job.id for job in replicas(log)]
    record = log.state.service("llama")
    assert record is not None
    assert next_roll(record, log.state.job, set(jobs)) is None  # nothing is old
    log.apply(UpdateService(updated(service_spec(replicas=3), "v2"), "alice", False, SECOND))
    record = log.state.service("llama")
    assert record is not None
    # All ready: the lowest slot goes first.
    assert next_roll(record, log.state.job, set(jobs)) == 0
    # An old replica that is not ready goes first: replacing it costs no readiness.
    assert next_roll(record, log.state.job, {jobs[0], jobs[1]}) == 2
    log.apply(RollReplica("llama", 0, 2, jobs[0], 2 * SECOND))
    record = log.state.service("llama")
    assert record is not None
    new = record.replica_jobs[0]
    # Until the new replica is ready, nothing else is replaced.
    assert next_roll(record, log.state.job, {jobs[1], jobs[2]}) is None
    assert next_roll(record, log.state.job, {new, jobs[1], jobs[2]}) == 1


def test_update_and_roll_commands_survive_the_log_bytes() -> None:
    update = UpdateService(updated(service_spec(), "v2"), "alice", True, SECOND)
    roll = RollReplica("llama", 1, 3, "llama-4-1-4", 2 * SECOND)
    assert decode(encode(update)) == update
    assert decode(encode(roll)) == roll


def test_a_replica_carries_its_services_probes_and_revision() -> None:
    with_liveness = service_spec()
    with_liveness.liveness.path = "/alive"
    job = replica_spec(with_liveness, 1, revision=3)
    assert (job.replica_of.slot, job.replica_of.revision) == (1, 3)
    assert not replica_spec(service_spec(), 0).replica_of.revision  # 1 reads as unset
    assert job.replica_of.liveness.path == "/alive"
    assert not replica_spec(service_spec(), 0).replica_of.HasField("liveness")


def test_a_replica_on_a_drained_node_is_moved_one_at_a_time() -> None:
    """Replicas never end by themselves, so a drained node would keep them (and its
    drain never finish) unless the leader moves them as it rolls an update."""
    log = Log(ControlState(retry_backoff_base_us=SECOND))
    log.apply(CreateService(service_spec(), "alice", 0))
    first, second = replicas(log)
    run(log, first, "n1", SECOND)
    run(log, second, "n2", SECOND)
    record = log.state.service("llama")
    assert record is not None
    ready = {first.id, second.id}
    assert next_roll(record, log.state.job, ready, log.state.drained_nodes()) is None
    # A roll the drain does not call for is refused.
    assert not log.apply(RollReplica("llama", 1, 1, second.id, 2 * SECOND)).ok
    assert log.apply(SetNodeDrain("n2", True, "admin", 2 * SECOND)).ok
    assert next_roll(record, log.state.job, ready, log.state.drained_nodes()) == 1
    assert log.apply(RollReplica("llama", 1, 1, second.id, 3 * SECOND)).ok
    moved = log.state.job(second.id)
    assert moved is not None
    assert moved.cancel_requested
    assert moved.cancel_reason.endswith("its node is drained")
    assert replicas(log)[1].id != second.id
