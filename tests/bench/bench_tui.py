"""`murmur top` at lab scale: first paint and update latency with 200 nodes and 10,000 jobs.

Run with ``python -m tests.bench.bench_tui [--quick]`` (also part of ``make bench``).
The app runs headless (Textual's test driver, 160x50) against an in-process fake
cluster that streams constructed NodeInfo and Job messages, so the figures are the
dashboard's own cost: decoding is excluded, painting to a real terminal too.

- first paint: from creating the app to the first frame whose table shows every node
  (cluster view), and to the first frame of the jobs view with all 10,000 jobs;
- update latency: from a change arriving on a watch stream to the frame that shows it,
  while a background load of 100 node and 50 job updates a second streams in.
Targets from issue 4: first paint <= 1 s; smooth (a frame within the 0.1 s tick).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import time
from typing import Any

from textual.pilot import Pilot

from murmur.tui import Connection, MurmurTop
from murmur.tui.app import REFRESH_SECONDS
from murmur.tui.widgets.virtual_table import VirtualTable
from murmur.v1 import types_pb2
from tests.tui.fake_cluster import FakeCluster, make_job, make_node

_PHASE = random.Random(4)
NODES = 200
JOBS = 10_000
SIZE = (160, 50)
STATES = [
    types_pb2.JOB_STATE_SUCCEEDED, types_pb2.JOB_STATE_FAILED, types_pb2.JOB_STATE_CANCELLED,
    types_pb2.JOB_STATE_RUNNING, types_pb2.JOB_STATE_PENDING,
]  # fmt: skip


def build_cluster() -> FakeCluster:
    nodes = [
        make_node(f"gpu-{i:03d}", used=i % 9 if i % 9 <= 8 else 8, utilization=[i % 100, 50],
                  leader=i == 0, runs_active=i % 4)
        for i in range(NODES)
    ]  # fmt: skip
    jobs = []
    for i in range(JOBS):
        state = STATES[i % len(STATES)]
        active = state == types_pb2.JOB_STATE_RUNNING
        jobs.append(
            make_job(
                f"j-{i:05d}", user=f"user{i % 37}", name=f"exp-{i % 113}", state=state,
                node=f"gpu-{i % NODES:03d}" if active or state != types_pb2.JOB_STATE_PENDING
                else "",
                gpu_indices=[i % 8] if active else [], queue=("default", "short")[i % 2],
                reason="waiting: 8 GPUs asked, at most 4 free on one node"
                if state == types_pb2.JOB_STATE_PENDING else "",
                age_seconds=JOBS - i,
            )
        )  # fmt: skip
    return FakeCluster(nodes=nodes, jobs=jobs)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def wait_painted(app: MurmurTop, rows: int, deadline: float = 30.0) -> float:
    """Waits for a frame of the current view's table showing `rows` rows; returns when."""
    start = time.perf_counter()
    while time.perf_counter() - start < deadline:
        tables = list(app.screen.query(VirtualTable))
        if tables:
            table = tables[0]
            if len(table.model) >= rows and table.painted_revision == table.model.revision:
                return table.painted_at
        await asyncio.sleep(0.002)
    raise TimeoutError(f"no frame with {rows} rows in {deadline} s")


async def measure_update(
    app: MurmurTop, push: Any, key: str, changed: Any, wanted: object
) -> float:
    """Seconds from pushing a change to the first frame painted after the model has it.

    A random pause first, so pushes land anywhere in the repaint tick rather than
    always just after the frame that ended the previous measurement.
    """
    table = app.screen.query_one(VirtualTable)
    await asyncio.sleep(_PHASE.uniform(0, REFRESH_SECONDS))
    start = time.perf_counter()
    push()
    while time.perf_counter() - start < 10:
        await asyncio.sleep(0.001)
        item = table.model.get(key)
        if (
            item is not None
            and changed(item) == wanted
            and table.painted_revision == (table.model.revision)
        ):
            return table.painted_at - start
    raise TimeoutError(f"the change to {key} was not painted within 10 s")


async def background_load(fake: FakeCluster, stop: asyncio.Event) -> None:
    """100 node and 50 job updates a second, as a busy 200-node lab sends them.

    They touch the second half of the nodes and the older jobs, so they never
    overwrite a change whose latency is being measured (top rows of each view).
    """
    tick = 0
    while not stop.is_set():
        tick += 1
        name = f"gpu-{NODES // 2 + (tick * 7) % (NODES // 2):03d}"
        node = make_node(name, utilization=[tick % 100, 10], used=tick % 8,
                         measured_at=1_790_000_000 + tick)  # fmt: skip
        fake.push_node(node)
        if tick % 2 == 0:
            job = fake.jobs[(tick * 13) % (JOBS // 2)]
            fake.push_job(job)
        await asyncio.sleep(0.01)


async def run(samples: int) -> dict[str, float | list[float]]:
    fake = build_cluster()
    created = time.perf_counter()
    app = MurmurTop(Connection(fake.address, lambda address: fake))
    results: dict[str, float | list[float]] = {}
    async with app.run_test(size=SIZE) as pilot:
        painted = await wait_painted(app, NODES)
        results["first_paint_cluster_s"] = painted - created
        while len(app.state.jobs) < JOBS:  # noqa: ASYNC110 (polling is the measurement)
            await asyncio.sleep(0.005)
        results["all_jobs_streamed_s"] = time.perf_counter() - created
        switch = time.perf_counter()
        await _press(pilot, "colon", *"jobs", "enter")
        results["first_paint_jobs_view_s"] = await wait_painted(app, JOBS) - switch

        stop = asyncio.Event()
        load = asyncio.create_task(background_load(fake, stop))
        job_latencies = []
        table = app.screen.query_one(VirtualTable)
        for round_ in range(samples):
            key = table.model.visible()[round_ % 10]
            job = types_pb2.Job()
            job.CopyFrom(app.state.jobs[key])
            job.reason = f"update {round_}"
            latency = await measure_update(
                app, lambda job=job: fake.push_job(job), key, lambda j: j.reason, job.reason
            )
            job_latencies.append(latency)
        await _press(pilot, "colon", *"cluster", "enter")
        await wait_painted(app, NODES)
        node_latencies = []
        table = app.screen.query_one(VirtualTable)
        for round_ in range(samples):
            key = table.model.visible()[round_ % 10]
            node = make_node(key, used=round_ % 8, runs_active=round_ + 1000)
            latency = await measure_update(
                app, lambda node=node: fake.push_node(node), key,
                lambda n: n.load.runs_active, round_ + 1000,
            )  # fmt: skip
            node_latencies.append(latency)
        stop.set()
        await load
        results["job_update_latency_s"] = job_latencies
        results["node_update_latency_s"] = node_latencies
    return results


async def _press(pilot: Pilot[Any], *keys: str) -> None:
    for key in keys:
        await pilot.press(key)


def import_seconds() -> float:
    """Wall time of a fresh interpreter importing the dashboard (what `murmur top` pays)."""
    code = "import time; t = time.perf_counter(); import tui.app; print(time.perf_counter() - t)"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return float(output.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 update samples instead of 200")
    args = parser.parse_args()
    samples = 30 if args.quick else 200
    print(f"murmur top: {NODES} nodes, {JOBS} jobs, headless {SIZE[0]}x{SIZE[1]}")
    print(f"  import tui.app (fresh interpreter):  {import_seconds() * 1000:7.0f} ms")
    results = asyncio.run(run(samples))
    for name in ("first_paint_cluster_s", "all_jobs_streamed_s", "first_paint_jobs_view_s"):
        value = results[name]
        assert isinstance(value, float)
        target = "  (target <= 1000 ms)" if name.startswith("first_paint") else ""
        print(f"  {name.removesuffix('_s'):34} {value * 1000:7.0f} ms{target}")
    for name in ("job_update_latency_s", "node_update_latency_s"):
        series = results[name]
        assert isinstance(series, list)
        print(
            f"  {name.removesuffix('_s'):34} p50 {statistics.median(series) * 1000:5.0f} ms"
            f"  p99 {percentile(series, 0.99) * 1000:5.0f} ms  max {max(series) * 1000:5.0f} ms"
            f"  (n={len(series)}, with 100 node + 50 job updates/s streaming)"
        )


if __name__ == "__main__":
    main()
