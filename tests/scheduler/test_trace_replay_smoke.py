"""The trace replay benchmark's simulation holds its invariants (no timing asserted).

A slice of the Alibaba trace goes through Murmur's scheduler and the two references
of ``tests/bench/bench_trace_replay.py``; the runs each replay records are checked
here by a sweep of their own (not the replay's bookkeeping): no GPU held twice, no
node's CPUs or memory over-committed at any instant, every job that ran ran for its
run time on as many distinct nodes as it has ranks, every job that fits ran. Hand-
built cases check that the references behave (EASY never delays the head job past
its reservation; strict FIFO lets nothing pass a blocked head) and that the checker
and the replay's own start check catch an over-allocation.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tests.bench import bench_trace_replay
from tests.bench.trace_jobs import (
    NODES_FILE,
    PODS_FILE,
    TRACE_DIR,
    TraceJob,
    TraceNode,
    jobs_of,
    read_nodes,
    read_pods,
    sample_jobs,
    sample_nodes,
    scaled_to_load,
)
from tests.bench.trace_metrics import jain_index, max_min_entitlements, summarize
from tests.bench.trace_policies import EasyBackfill, FifoFirstFit, MurmurScheduler
from tests.bench.trace_sim import RankStart, Replay, ReplayError, ReplayResult, RunRecord, replay

GIB = 2**30

needs_trace = pytest.mark.skipif(
    not (TRACE_DIR / PODS_FILE).exists(), reason=f"the trace is not at {TRACE_DIR}"
)


def over_allocations(nodes: Sequence[TraceNode], runs: Sequence[RunRecord]) -> list[str]:
    """Every instant where a GPU is held twice or a node's CPUs or memory run over,
    found by sweeping the runs' starts and ends (ends first at equal times)."""
    events = []
    for run in runs:
        events.append((run.start, 1, run))
        events.append((run.end, 0, run))
    events.sort(key=lambda event: (event[0], event[1], event[2].job.id))
    holders: dict[tuple[int, int], str] = {}
    cpu_milli = [0] * len(nodes)
    memory = [0] * len(nodes)
    problems = []
    for at, is_start, run in events:
        job = run.job
        for rank in run.ranks:
            sign = 1 if is_start else -1
            cpu_milli[rank.node] += sign * job.cpu_milli
            memory[rank.node] += sign * job.memory_bytes
            for index in rank.gpu_indices:
                if not 0 <= index < nodes[rank.node].gpus:
                    problems.append(f"{job.id}: no GPU {index} on node {rank.node}")
                if not is_start:
                    holders.pop((rank.node, index), None)
                elif (rank.node, index) in holders:
                    other = holders[rank.node, index]
                    problems.append(f"t={at}: GPU {index} of node {rank.node}: {other}, {job.id}")
                else:
                    holders[rank.node, index] = job.id
            node = nodes[rank.node]
            if cpu_milli[rank.node] > node.cpu_milli or memory[rank.node] > node.memory_bytes:
                problems.append(f"t={at}: node {rank.node} over-committed by {job.id}")
    return problems


def check_result(result: ReplayResult) -> None:
    """The invariants every replay must hold, whatever the scheduler."""
    assert over_allocations(result.nodes, result.runs) == []
    ran = [run.job.id for run in result.runs]
    assert len(ran) == len(set(ran)), "a job ran twice"
    assert sorted(ran + [job.id for job in result.never_ran]) == sorted(
        job.id for job in result.jobs
    )
    for run in result.runs:
        assert run.end - run.start == run.job.duration_us, run.job.id
        assert run.start >= run.job.arrival_us, run.job.id
        assert len(run.ranks) == run.job.nodes
        assert len({rank.node for rank in run.ranks}) == run.job.nodes, "a gang rank doubled up"
        assert all(len(rank.gpu_indices) == run.job.gpus for rank in run.ranks)
    assert all(job.id in result.unfit for job in result.never_ran), "a job that fits never ran"


def job(
    name: str, order: int, arrival: int, duration: int, gpus: int, *, nodes: int = 1
) -> TraceJob:
    return TraceJob(
        id=name,
        order=order,
        arrival_us=arrival,
        duration_us=duration,
        gpus=gpus,
        cpu_milli=1000 * gpus,
        memory_bytes=GIB * gpus,
        nodes=nodes,
        user=f"user-{name}",
        group="group-00" if order % 2 else "group-01",
    )


NODE_PAIR = (
    TraceNode("node-0", "G2", 8, 96_000, 384 * GIB),
    TraceNode("node-1", "G2", 8, 96_000, 384 * GIB),
)

# node-0: A holds 4 GPUs until 100. node-1: B holds 6 until 50. The head H wants a
# whole node: its reservation is node-1 at t=50. L1 and L2 (long) fit beside A on
# node-0; L3 (long) would only fit on node-1 and would push H past 50; S (short,
# ends at 33) may use node-1's 2 free GPUs.
RESERVATION_CASE = (
    job("A", 0, 0, 100, 4),
    job("B", 1, 0, 50, 6),
    job("H", 2, 1, 10, 8),
    job("L1", 3, 2, 1000, 2),
    job("L2", 4, 2, 1000, 2),
    job("L3", 5, 2, 1000, 2),
    job("S", 6, 3, 30, 2),
)


def starts(result: ReplayResult) -> dict[str, int]:
    return {run.job.id: run.start for run in result.runs}


def test_easy_backfills_around_the_head_without_delaying_it() -> None:
    easy = EasyBackfill()
    result = replay(NODE_PAIR, RESERVATION_CASE, easy)
    check_result(result)
    started = starts(result)
    assert easy.promised["H"] == 50
    assert started["H"] == 50
    assert started["L1"] == started["L2"] == 2  # beside A, off the reserved node
    assert started["S"] == 3  # on the reserved node, but done by t=50
    assert started["L3"] >= started["H"]  # it would have taken the head's room


def test_easy_with_overestimated_limits_still_keeps_the_promise() -> None:
    easy = EasyBackfill(estimate=2)
    result = replay(NODE_PAIR, RESERVATION_CASE, easy)
    check_result(result)
    assert starts(result)["H"] <= easy.promised["H"]


def test_fifo_lets_nothing_pass_a_blocked_head() -> None:
    result = replay(NODE_PAIR, RESERVATION_CASE, FifoFirstFit())
    check_result(result)
    started = starts(result)
    assert started["H"] == 50
    assert all(started[name] >= started["H"] for name in ("L1", "L2", "L3", "S"))


def test_murmur_places_gangs_whole_and_keeps_jobs_that_cannot_fit_waiting() -> None:
    jobs = (
        job("busy", 0, 0, 40, 4),
        job("gang", 1, 1, 20, 8, nodes=2),
        job("wide", 2, 1, 20, 8, nodes=3),  # 3 ranks, 2 nodes: never
        job("small", 3, 2, 5, 4),
    )
    for scheduler in (MurmurScheduler(), EasyBackfill(), FifoFirstFit()):
        result = replay(NODE_PAIR, jobs, scheduler)
        check_result(result)
        assert [never.id for never in result.never_ran] == ["wide"]
        gang = next(run for run in result.runs if run.job.id == "gang")
        assert gang.start == 40  # when "busy" frees node-0, on both nodes at once
        assert summarize(result).never_ran_fitting == 0


def test_the_checks_catch_an_over_allocation() -> None:
    a, b = job("a", 0, 0, 10, 2), job("b", 1, 0, 10, 2)
    overlapping = [
        RunRecord(a, 0, 10, (RankStart(0, (0, 1)),)),
        RunRecord(b, 5, 15, (RankStart(0, (1, 2)),)),
    ]
    assert over_allocations(NODE_PAIR, overlapping) != []
    assert (
        over_allocations(NODE_PAIR, [overlapping[0], RunRecord(b, 10, 20, overlapping[1].ranks)])
        == []
    )

    class DoubleBooker:
        name = "double booker"

        def schedule(self, replay: Replay) -> None:
            for waiting in list(replay.pending.values()):
                replay.start(waiting, [RankStart(0, (0, 1))])

    with pytest.raises(ReplayError):
        replay(NODE_PAIR, (a, b), DoubleBooker())


def test_fairness_figures() -> None:
    assert jain_index([1, 1, 1]) == 1
    assert jain_index([1, 0]) == 0.5
    assert max_min_entitlements({"a": 10, "b": 100, "c": 100}, 70) == {
        "a": 10,
        "b": 30,
        "c": 30,
    }
    assert max_min_entitlements({"a": 10, "b": 20}, 100) == {"a": 10, "b": 20}


@pytest.fixture(scope="module")
def trace_slice() -> tuple[list[TraceNode], list[TraceJob]]:
    pods = read_pods(TRACE_DIR / PODS_FILE)
    nodes = sample_nodes(read_nodes(TRACE_DIR / NODES_FILE), 4, seed=7)
    jobs = sample_jobs(jobs_of(pods, max_seconds=4 * 3600), 400, seed=7)
    return nodes, scaled_to_load(jobs, sum(node.gpus for node in nodes), 1.2)


@needs_trace
def test_a_trace_slice_replays_cleanly_under_every_scheduler(
    trace_slice: tuple[list[TraceNode], list[TraceJob]],
) -> None:
    nodes, jobs = trace_slice
    assert any(j.nodes > 1 for j in jobs) or len(jobs) < 400  # gangs usually in the slice
    easy = EasyBackfill()
    for scheduler in (MurmurScheduler(), FifoFirstFit(), easy):
        result = Replay(nodes, jobs).run(scheduler)
        check_result(result)
        summary = summarize(result)
        assert 0 < summary.allocation <= 1
        assert 0 < summary.jain <= 1
    started = {run.job.id: run.start for run in result.runs}
    assert easy.promised  # the slice is busy enough to block heads
    assert all(started[head] <= promised for head, promised in easy.promised.items())


@needs_trace
def test_murmur_incremental_plans_equal_fresh_ones(
    trace_slice: tuple[list[TraceNode], list[TraceJob]],
) -> None:
    nodes, jobs = trace_slice
    incremental = replay(nodes, jobs, MurmurScheduler())
    fresh = replay(nodes, jobs, MurmurScheduler(incremental=False))
    assert incremental.runs == fresh.runs


@needs_trace
def test_the_benchmark_prints_its_table(capsys: pytest.CaptureFixture[str]) -> None:
    summaries = bench_trace_replay.main(["--sizes", "2", "--jobs-per-gpu", "10"])
    out = capsys.readouterr().out
    assert len(summaries) == 3
    assert out.count("| 2 x 8 |") == 3
    assert "| FIFO + EASY backfill |" in out
