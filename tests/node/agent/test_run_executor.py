"""The node's run executor with a real store and real processes: assignments run to
their end, fencing, idempotence, GPU booking, stops, reports, the lease, and adoption
after a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from pathlib import Path

import pytest

from murmur.node.agent.executor import (
    StaleAssignmentError,
    lease_file_slack,
)
from murmur.node.agent.runtimes.lease_file import read_lease
from murmur.node.agent.runtimes.procfs import is_running
from murmur.node.agent.runtimes.run_files import CHILD_FILE, EXIT_FILE, read_json
from murmur.node.agent.runtimes.run_log import read_entries
from murmur.node.errors import FailedPreconditionError
from murmur.node.jobspec import states
from murmur.storage import Store
from tests.support.executor import assignment, executor, until


async def test_an_assigned_run_succeeds_and_every_transition_is_reported(
    store: Store, runs_dir: Path
) -> None:
    async with executor(store, runs_dir) as node:
        first = await node.jobs.start_assigned(
            assignment("j1.1", "sh", "-c", "echo CUDA=$CUDA_VISIBLE_DEVICES", gpus=(0, 1),
                       term=3, sequence=17)
        )  # fmt: skip
        assert first.state == states.STARTING
        done = await node.ended("j1.1")
    assert [r.state for r in node.of("j1.1")] == [states.STARTING, states.RUNNING, states.SUCCEEDED]
    assert {(r.term, r.sequence, r.gpu_indices) for r in node.of("j1.1")} == {(3, 17, (0, 1))}
    assert done.exit_code == 0
    assert await store.get_run("j1.1") == done
    mirror = await store.get_job("j1")
    assert (mirror.state, mirror.attempts, mirror.user) == (states.SUCCEEDED, 1, "ada")
    lines = [entry.text for entry in read_entries(node.jobs.files_of("j1.1").log_dir)]
    assert "CUDA=0,1" in lines
    events = await store.list_events(subject="j1")
    assert [event.job_state for event in events] == [
        states.STARTING, states.RUNNING, states.SUCCEEDED
    ]  # fmt: skip


async def test_taking_and_freeing_gpus_is_told_once_the_books_show_it(
    store: Store, runs_dir: Path
) -> None:
    """This node's NodeInfo is published from it at once (nothing polls): each call
    must already see the run's GPUs taken, then given back."""
    async with executor(store, runs_dir) as node:
        await node.jobs.start_assigned(assignment("j9.1", "true", gpus=(2, 5)))
        await node.ended("j9.1")
        await until(lambda: len(node.allocations) >= 2)
    assert node.allocations[:2] == [{2: "j9", 5: "j9"}, {}]


async def test_a_failing_run_ends_failed_with_its_exit_code_and_is_not_retried(
    store: Store, runs_dir: Path
) -> None:
    async with executor(store, runs_dir) as node:
        spec = assignment("j1.1", "sh", "-c", "exit 3")
        spec.spec.retries = 5
        await node.jobs.start_assigned(spec)
        done = await node.ended("j1.1")
        await asyncio.sleep(0.2)
        assert node.jobs.active_run_count == 0
    assert (done.state, done.exit_code) == (states.FAILED, 3)
    assert [r.id for r in await store.list_runs()] == ["j1.1"]
    assert (await store.get_job("j1")).state == states.FAILED


async def test_a_retried_job_comes_back_with_a_new_attempt(store: Store, runs_dir: Path) -> None:
    async with executor(store, runs_dir) as node:
        await node.jobs.start_assigned(assignment("j1.1", "false"))
        await node.ended("j1.1")
        await node.jobs.start_assigned(assignment("j1.2", "true", attempt=2, sequence=2))
        assert (await node.ended("j1.2")).state == states.SUCCEEDED
    mirror = await store.get_job("j1")
    assert (mirror.state, mirror.attempts) == (states.SUCCEEDED, 2)


async def test_an_older_term_is_refused_also_after_a_restart(store: Store, runs_dir: Path) -> None:
    async with executor(store, runs_dir) as node:
        await node.jobs.start_assigned(assignment("j1.1", "true", term=5))
        await node.ended("j1.1")
        with pytest.raises(StaleAssignmentError, match=r"term 4 .*term 5"):
            await node.jobs.start_assigned(assignment("j2.1", "true", term=4))
        with pytest.raises(StaleAssignmentError):
            await node.jobs.stop_run("j1.1", term=4, reason="")
        with pytest.raises(StaleAssignmentError):
            await node.jobs.runs_report(term=4, lease_seconds=30)
    async with executor(store, runs_dir) as restarted:
        await restarted.jobs.runs_report(term=5, lease_seconds=30)  # waits for recovery
        assert restarted.jobs.highest_term == 5
        with pytest.raises(StaleAssignmentError):
            await restarted.jobs.start_assigned(assignment("j2.1", "true", term=4))
        await restarted.jobs.start_assigned(assignment("j2.1", "true", term=6))
        await restarted.ended("j2.1")
        assert restarted.jobs.highest_term == 6
    assert [r.term for r in await store.list_runs()] == [5, 6]


async def test_a_later_leader_may_send_again_what_an_earlier_one_assigned(
    store: Store, runs_dir: Path
) -> None:
    """Regression (found by the soak): a new leader re-sent a never-started run of the
    term before, the node refused its old term, and the job was lost unrun."""
    async with executor(store, runs_dir) as node:
        await node.jobs.runs_report(term=2, lease_seconds=30)  # the new leader's word
        with pytest.raises(StaleAssignmentError):
            await node.jobs.start_assigned(assignment("j1.1", "true", term=1))
        again = dataclasses.replace(assignment("j1.1", "true", term=1), sender_term=2)
        started = await node.jobs.start_assigned(again)
        assert (started.term, started.state) == (1, states.STARTING)  # its token stays
        assert (await node.ended("j1.1")).state == states.SUCCEEDED
        deposed = dataclasses.replace(assignment("j2.1", "true", term=1), sender_term=1)
        with pytest.raises(StaleAssignmentError):
            await node.jobs.start_assigned(deposed)


async def test_the_same_assignment_twice_starts_one_run(store: Store, runs_dir: Path) -> None:
    async with executor(store, runs_dir) as node:
        again = assignment("j1.1", "sleep", "30", gpus=(0,))
        first = await node.jobs.start_assigned(again)
        second = await node.jobs.start_assigned(again)
        assert second.id == first.id
        assert node.jobs.active_run_count == 1
        await node.jobs.stop_run("j1.1", term=1, reason="done")
        ended = await node.ended("j1.1")
        assert await node.jobs.start_assigned(again) == ended  # from the store
    assert [r.state for r in node.of("j1.1")].count(states.STARTING) == 1
    assert len(await store.list_runs()) == 1


async def test_a_gpu_is_never_double_booked_unless_both_share(store: Store, runs_dir: Path) -> None:
    async with executor(store, runs_dir) as node:
        await node.jobs.start_assigned(assignment("a.1", "sleep", "30", gpus=(0, 1)))
        with pytest.raises(FailedPreconditionError, match=r"GPU 1 is held by run a\.1"):
            await node.jobs.start_assigned(assignment("b.1", "sleep", "30", gpus=(1, 2)))
        with pytest.raises(FailedPreconditionError, match="GPU 9 is not present"):
            await node.jobs.start_assigned(assignment("b.1", "sleep", "30", gpus=(9,)))
        await node.jobs.start_assigned(assignment("c.1", "sleep", "30", gpus=(2,), share=True))
        await node.jobs.start_assigned(assignment("d.1", "sleep", "30", gpus=(2,), share=True))
        with pytest.raises(FailedPreconditionError, match=r"GPU 2 is held by run c\.1"):
            await node.jobs.start_assigned(assignment("e.1", "sleep", "30", gpus=(2,)))
        holders = node.jobs.gpu_holders()
        assert (holders[0], holders[1], holders[2] in {"c", "d"}) == ("a", "a", True)
        assert node.jobs.active_run_count == 3
        await node.jobs.stop_run("a.1", term=1, reason="free them")
        await node.ended("a.1")
        await node.jobs.start_assigned(assignment("b.1", "sleep", "30", gpus=(1,)))
    assert "b.1" in {r.id for r in await store.list_runs()}


async def test_stop_run_cancels_with_the_reason(store: Store, runs_dir: Path) -> None:
    async with executor(store, runs_dir) as node:
        await node.jobs.start_assigned(assignment("j1.1", "sleep", "30"))
        await node.running("j1.1")
        started = time.monotonic()
        assert await node.jobs.stop_run("j1.1", term=1, reason="cancelled by ada")
        done = await node.ended("j1.1")
        assert time.monotonic() - started < 5
        assert not await node.jobs.stop_run("j1.1", term=1, reason="again")
        assert not await node.jobs.stop_run("nobody.1", term=1, reason="")
    assert (done.state, done.reason) == (states.CANCELLED, "cancelled by ada")
    assert (await store.get_job("j1")).state == states.CANCELLED


async def test_a_run_the_node_judges_broken_ends_failed_with_why(
    store: Store, runs_dir: Path
) -> None:
    """What a replica's failing liveness probe asks (``fail_run``): the run is stopped
    and ends failed, not cancelled, so its job goes on as a failure's would."""
    async with executor(store, runs_dir) as node:
        await node.jobs.start_assigned(assignment("j1.1", "sleep", "30"))
        await node.running("j1.1")
        node.jobs.fail_run("j1.1", "liveness probe GET /health failed 3 times in a row")
        node.jobs.fail_run("nobody.1", "not here: nothing happens")
        done = await node.ended("j1.1")
    assert (done.state, done.reason) == (
        states.FAILED,
        "liveness probe GET /health failed 3 times in a row",
    )


async def test_a_time_limit_fails_the_run(store: Store, runs_dir: Path) -> None:
    async with executor(store, runs_dir) as node:
        await node.jobs.start_assigned(assignment("j1.1", "sleep", "30", time_limit=0.5))
        done = await node.ended("j1.1")
    assert done.state == states.FAILED
    assert "time limit" in done.reason


async def test_runs_report_lists_active_and_recent_runs_and_renews_the_lease(
    store: Store, runs_dir: Path
) -> None:
    lease = 2.0  # renewed every 0.3 s: a stall of over a second is needed to lapse it
    async with executor(store, runs_dir, lease=lease) as node:
        await node.jobs.start_assigned(assignment("done.1", "true", lease=lease))
        await node.ended("done.1")
        await node.jobs.start_assigned(assignment("long.1", "sleep", "30", lease=lease))
        await node.running("long.1")
        for _ in range(16):  # 4.8 s: more than twice the lease
            before = time.time()
            report = await node.jobs.runs_report(term=1, lease_seconds=lease)
            written = read_lease(runs_dir / "long.1")
            assert written is not None
            # A short lease's file lags it by a tenth of it at most, not by the full
            # LEASE_FILE_SLACK_SECONDS (a 1 s lease's file would then lapse between
            # renewals): the bound is written out here, not taken from lease_file_slack.
            assert written.expires_at >= before + lease - lease / 10
            await asyncio.sleep(0.3)
        assert {(r.id, r.state) for r in report} == {
            ("long.1", states.RUNNING), ("done.1", states.SUCCEEDED)
        }  # fmt: skip
        assert node.jobs.run_is_active("long.1")
        # No word from a leader any more: the run is stopped and recorded lost.
        lost = await node.ended("long.1", within=lease + 10)
    assert lost.state == states.LOST
    assert lost.reason == "lost: no word from a leader for 2 s (lease expired)"
    assert states.lost_with_its_node(lost.reason)  # its job is requeued, no retry spent
    assert (await store.get_job("long")).state == states.LOST


async def test_a_runs_lease_file_lags_renewals_by_at_most_the_slack_and_never_runs_late(
    store: Store, runs_dir: Path
) -> None:
    async with executor(store, runs_dir, lease=30.0) as node:
        await node.jobs.start_assigned(assignment("long.1", "sleep", "30", lease=30.0))
        await node.running("long.1")
        for _ in range(6):
            await asyncio.sleep(0.3)
            before = time.time()
            await node.jobs.runs_report(term=1, lease_seconds=30)
            written = read_lease(runs_dir / "long.1")
            assert written is not None
            # Earlier than the lease the node holds, by at most the slack: never later.
            assert written.expires_at <= time.time() + 30
            assert written.expires_at >= before + 30 - lease_file_slack(30)
        # A shortened lease is written at once, whatever the slack.
        await node.jobs.runs_report(term=1, lease_seconds=5)
        shorter = read_lease(runs_dir / "long.1")
        assert shorter is not None
        assert shorter.lease_seconds == 5
        assert shorter.expires_at <= time.time() + 5
        await node.jobs.stop_run("long.1", term=1, reason="done")
        assert (await node.ended("long.1")).state == states.CANCELLED


async def test_a_restarted_executor_adopts_live_runs_and_records_dead_ones_lost(
    store: Store, runs_dir: Path
) -> None:
    async with executor(store, runs_dir, stop_runs=False) as first:
        await first.jobs.start_assigned(assignment("live.1", "sleep", "30", gpus=(0,)))
        await first.jobs.start_assigned(assignment("dies.1", "sleep", "30", gpus=(1,)))
        await first.running("live.1")
        dies = await first.running("dies.1")
    # The daemon is down; meanwhile one run dies without a word (kill -9 of all of it).
    child = read_json(runs_dir / "dies.1" / CHILD_FILE)
    assert child is not None
    assert dies.pid is not None
    os.killpg(child["pgid"], signal.SIGKILL)
    os.kill(dies.pid, signal.SIGKILL)
    supervisor = (dies.pid, dies.pid_start_time)
    await until(lambda: not is_running(*supervisor))
    async with executor(store, runs_dir) as second:
        report = await second.jobs.runs_report(term=1, lease_seconds=30)
        assert second.jobs.run_is_active("live.1")
        assert not second.jobs.run_is_active("dies.1")
        assert second.jobs.gpu_holders() == {0: "live"}
        assert [r.state for r in second.of("dies.1")] == [states.LOST]
        assert {(r.id, r.state) for r in report} == {
            ("live.1", states.RUNNING), ("dies.1", states.LOST)
        }  # fmt: skip
        await second.jobs.stop_run("live.1", term=1, reason="done")
        assert (await second.ended("live.1")).state == states.CANCELLED


async def test_the_supervisor_stops_a_run_whose_lease_expires_while_the_daemon_is_down(
    store: Store, runs_dir: Path
) -> None:
    async with executor(store, runs_dir, lease=1.5, stop_runs=False) as first:
        await first.jobs.start_assigned(assignment("j1.1", "sleep", "30", lease=1.5))
        await first.running("j1.1")
        renewed = time.monotonic()
    # No daemon, so no watchdog: the run's supervisor alone must stop it.
    child = read_json(runs_dir / "j1.1" / CHILD_FILE)
    assert child is not None
    job = (child["pid"], child["start_time"])
    await until(lambda: (runs_dir / "j1.1" / EXIT_FILE).exists(), within=10)
    assert not is_running(*job)
    assert time.monotonic() - renewed < 1.5 + 3
    async with executor(store, runs_dir) as second:
        report = await second.jobs.runs_report(term=1, lease_seconds=30)
        await second.ended("j1.1")  # its change may reach the listener just after (load)
        assert [r.state for r in second.of("j1.1")] == [states.LOST]
    (record,) = [r for r in report if r.id == "j1.1"]
    assert record.state == states.LOST
    assert record.reason.startswith("lost: no word from a leader for 1.5 s (lease expired)")
    assert states.lost_with_its_node(record.reason)  # the supervisor's words, as the node's


async def test_a_start_whose_caller_gives_up_midway_still_runs_to_its_end(
    store: Store, runs_dir: Path
) -> None:
    """Regression: a caller's deadline (gRPC's, or the leader's wait on its own node)
    cancelled start_assigned between writing the run "starting" and spawning its task:
    the run held its place for good, and no cancel could end it (issue 11)."""
    async with executor(store, runs_dir) as node:
        for turns in range(0, 200):
            run_id = f"c{turns}.1"
            call = asyncio.ensure_future(node.jobs.start_assigned(assignment(run_id, "true")))
            for _ in range(turns):
                await asyncio.sleep(0)
            call.cancel()
            await asyncio.wait([call])
            # The leader re-drives it: the run it started (if the call got that far)
            # goes on, or this starts it; either way, one run that ends.
            await node.jobs.start_assigned(assignment(run_id, "true"))
            done = await node.ended(run_id)
            assert done.state == states.SUCCEEDED, (turns, done)
            assert [r.state for r in node.of(run_id)].count(states.STARTING) == 1
        assert node.jobs.active_run_count == 0


async def test_a_refused_start_reaches_its_caller_and_the_executor_goes_on(
    store: Store, runs_dir: Path
) -> None:
    async with executor(store, runs_dir) as node:
        await node.jobs.start_assigned(assignment("r1.1", "true", term=5))
        with pytest.raises(StaleAssignmentError):
            await node.jobs.start_assigned(assignment("r2.1", "true", term=4))
        with pytest.raises(FailedPreconditionError):
            await node.jobs.start_assigned(assignment("r3.1", "true", gpus=(9,), term=5))
        await node.ended("r1.1")
        await node.jobs.start_assigned(assignment("r4.1", "true", term=5))
        assert (await node.ended("r4.1")).state == states.SUCCEEDED


async def test_a_run_the_leader_gives_up_is_stopped_and_recorded_lost(
    store: Store, runs_dir: Path
) -> None:
    async with executor(store, runs_dir) as node:
        await node.jobs.start_assigned(assignment("g1.1", "sleep", "30"))
        await node.running("g1.1")
        reason = "lost: did not start on node-1 within 600 s"
        assert await node.jobs.stop_run("g1.1", term=1, reason=reason, lost=True)
        done = await node.ended("g1.1")
    assert (done.state, done.reason) == (states.LOST, reason)


async def test_a_working_dir_outside_this_nodes_roots_is_refused_where_it_would_run(
    store: Store, runs_dir: Path, tmp_path: Path
) -> None:
    """The node that took the submission checked its own file system: the node that
    runs the job checks again, symlinks resolved on its disk."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "escape").symlink_to(tmp_path)
    async with executor(store, runs_dir, job_path_roots=(allowed,)) as node:
        spec = assignment("j1.1", "pwd")
        spec.spec.workdir = str(allowed / "escape")
        await node.jobs.start_assigned(spec)
        done = await node.ended("j1.1")
    assert done.state == states.FAILED
    assert done.reason.startswith("could not start: workdir")
    assert "outside the job path roots" in done.reason
    assert not (node.jobs.files_of("j1.1").directory / "launch.json").exists()
