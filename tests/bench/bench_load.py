"""A daemon under load: 100 concurrent clients against a node with 10,000 queued jobs.

``python -m tests.bench.bench_load [--queued N] [--clients N] [--seconds S] [--watchers N]``

The node is a lone leader with 8 simulated GPUs, all held by long ``sleep`` jobs, so
every queued job stays pending and each placement pass plans the whole queue. Client
processes (spawned, ``--clients`` channels in all) then call the node at a steady
pace, each client one call at a time with a random pause: reads (``GetStatus``,
``GetJob``), a page of ``ListJobs`` and submissions that join the queue. Every call's
latency is recorded on the client; the table gives p50 and p99 per method and over
all calls, against the target (daemon RPC p99 ≤ 100 ms). ``--watchers`` opens that
many ``WatchJobs`` streams for the run (a ``murmur top`` each).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

from murmur import AsyncClient, resolve_connect_config
from tests.bench.bench_jobs import fresh_node, process_spec
from tests.bench.run import ms, percentile
from tests.support.nodes import Lab

GPUS = 8
CLIENTS_PER_PROCESS = 25
CALL_TIMEOUT_SECONDS = 30.0
MIX = (("GetStatus", 4), ("GetJob", 4), ("ListJobs", 1), ("SubmitJob", 1))
"""Method → weight: what a lab's users and scripts mostly do is look."""


def mix_choice(rng: random.Random) -> str:
    names, weights = zip(*MIX, strict=True)
    return rng.choices(names, weights)[0]


async def client_loop(
    client: AsyncClient, job_ids: list[str], end: float, pause: float, seed: int
) -> dict[str, list[float]]:
    rng = random.Random(seed)
    queued = process_spec("true", gpus=1)
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "GetStatus": lambda: client.status(timeout=CALL_TIMEOUT_SECONDS),
        "GetJob": lambda: client.get_job(rng.choice(job_ids), timeout=CALL_TIMEOUT_SECONDS),
        "ListJobs": lambda: client.list_jobs(limit=50, timeout=CALL_TIMEOUT_SECONDS),
        "SubmitJob": lambda: client.submit_job(queued, timeout=CALL_TIMEOUT_SECONDS),
    }
    latencies: dict[str, list[float]] = defaultdict(list)
    await asyncio.sleep(rng.uniform(0, pause))  # spread the clients' first calls
    while time.perf_counter() < end:
        method = mix_choice(rng)
        began = time.perf_counter()
        await calls[method]()
        latencies[method].append(time.perf_counter() - began)
        await asyncio.sleep(rng.expovariate(1 / pause))
    return latencies


async def clients_for(
    address: str, identity: str, job_ids: list[str], clients: int, start_at: float,
    seconds: float, pause: float, seed: int,
) -> dict[str, list[float]]:  # fmt: skip
    """``clients`` clients, each with its own channel, from wall time ``start_at``."""
    config = resolve_connect_config(node=address, identity=identity)
    opened = [AsyncClient(config) for _ in range(clients)]
    try:
        for client in opened:
            await client.whoami(timeout=CALL_TIMEOUT_SECONDS)  # connected before the clock
        await asyncio.sleep(max(0.0, start_at - time.time()))
        end = time.perf_counter() + seconds
        results = await asyncio.gather(
            *(
                client_loop(client, job_ids, end, pause, seed * 1000 + number)
                for number, client in enumerate(opened)
            )
        )
    finally:
        for client in opened:
            await client.close()
    return merged(results)


def merged(results: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Method → every latency, from several clients' (or processes') samples."""
    every: dict[str, list[float]] = defaultdict(list)
    for result in results:
        for method, samples in result.items():
            every[method].extend(samples)
    return dict(every)


def clients_process(*args: object) -> dict[str, list[float]]:
    return asyncio.run(clients_for(*args))  # type: ignore[arg-type]


async def fill(lab: Lab, address: str, queued: int) -> list[str]:
    """Holds every GPU with a long job, then queues ``queued`` one-GPU jobs; returns
    every job's id."""
    config = resolve_connect_config(node=address, identity=lab.admin_identity)
    async with AsyncClient(config) as client:
        ids = [
            (await client.submit_job(process_spec("sleep", "3600", gpus=1))).id for _ in range(GPUS)
        ]
        spec = process_spec("true", gpus=1)

        async def submitter(count: int) -> None:
            for _ in range(count):
                ids.append((await client.submit_job(spec, timeout=CALL_TIMEOUT_SECONDS)).id)

        lanes = 16
        await asyncio.gather(
            *(submitter(queued // lanes + (lane < queued % lanes)) for lane in range(lanes))
        )
        deadline = time.monotonic() + 60
        while True:
            status = await client.status()
            if status.jobs_by_state.get("running", 0) == GPUS:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {GPUS} GPU-holding jobs did not start")
            await asyncio.sleep(0.2)
    return ids


async def watch(lab: Lab, address: str, stop: asyncio.Event) -> int:
    config = resolve_connect_config(node=address, identity=lab.admin_identity)
    seen = 0
    async with AsyncClient(config) as client:
        stream = client.watch_jobs()

        async def consume() -> None:
            nonlocal seen
            async for _ in stream:
                seen += 1

        task = asyncio.create_task(consume())
        await stop.wait()
        task.cancel()
    return seen


def report(samples: dict[str, list[float]], seconds: float) -> None:
    every = [value for values in samples.values() for value in values]
    print("| method | calls | p50 | p90 | p99 | max |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method, _ in MIX:
        values = samples.get(method, [])
        if values:
            print(
                f"| {method} | {len(values)} | {ms(statistics.median(values))} "
                f"| {ms(percentile(values, 0.9))} | {ms(percentile(values, 0.99))} "
                f"| {ms(max(values))} |"
            )
    print(
        f"| all ({len(every) / seconds:.0f} calls/s) | {len(every)} "
        f"| {ms(statistics.median(every))} | {ms(percentile(every, 0.9))} "
        f"| {ms(percentile(every, 0.99))} "
        f"| {ms(max(every))} |  target: p99 ≤ 100 ms"
    )


async def measure(args: argparse.Namespace, root: Path) -> None:
    labs: list[Lab] = []
    node = fresh_node(root, labs)
    lab = labs[-1]
    try:
        began = time.perf_counter()
        job_ids = await fill(lab, node.address, args.queued)
        print(f"submitted {len(job_ids):,} jobs in {time.perf_counter() - began:.1f} s", flush=True)
        stop = asyncio.Event()
        watchers = [
            asyncio.create_task(watch(lab, node.address, stop)) for _ in range(args.watchers)
        ]
        processes = max(1, args.clients // CLIENTS_PER_PROCESS)
        per_process = [
            args.clients // processes + (n < args.clients % processes) for n in range(processes)
        ]
        start_at = time.time() + 3.0 + 0.05 * args.clients
        context = multiprocessing.get_context("spawn")  # never fork a process that ran gRPC
        with context.Pool(processes) as pool:
            identity = str(lab.admin_identity)
            work = [
                (node.address, identity, job_ids, count, start_at, args.seconds, args.pause, seed)
                for seed, count in enumerate(per_process)
            ]
            # Waited for in a thread: the watchers' streams go on meanwhile.
            results = await asyncio.to_thread(pool.starmap, clients_process, work)
        stop.set()
        seen = sum(await asyncio.gather(*watchers))
        print(
            f"\n{args.clients} clients, one call at a time each, mean pause {args.pause:g} s; "
            f"{args.queued:,} queued; {args.watchers} WatchJobs streams ({seen:,} updates); "
            f"{args.seconds:g} s\n"
        )
        report(merged(results), args.seconds)
    finally:
        for lab in labs:
            lab.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pause", type=float, default=0.5, help="mean pause between calls")
    parser.add_argument("--watchers", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="murmur-bench-load-") as root:
        asyncio.run(measure(args, Path(root)))


if __name__ == "__main__":
    main()
