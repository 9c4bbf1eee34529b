"""Bursts of submissions, as in issue 11: ten bursts of 8 client processes x 125
submissions of `true` (1,000 jobs a burst), on one node and on a 3-node cluster
(clients spread over the nodes). Every acknowledged job must succeed; the figures
are how long a burst takes to be acknowledged and to end.

``python -m tests.bench.bench_bursts [--bursts 10] [--clients 8] [--per-client 125]``

Exit status 1 when any job did not succeed (its id, state and reason are printed).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from murmur.v1 import types_pb2
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS, wait_agreed
from tests.support.bursts import burst, wait_ended
from tests.support.cluster import client_for, start_cluster
from tests.support.nodes import Lab, NodeProcess, create_lab


async def bursts(
    lab: Lab, nodes: list[NodeProcess], args: argparse.Namespace, label: str
) -> tuple[list[str], int]:
    """Runs the bursts one after another; returns the table rows and the count of jobs
    that did not succeed."""
    rows, bad = [], 0
    addresses = [node.address for node in nodes]
    async with client_for(nodes[0], lab.admin_identity) as client:
        for index in range(1, args.bursts + 1):
            began = time.perf_counter()
            job_ids = await asyncio.to_thread(
                burst, addresses, lab.admin_identity,
                clients=args.clients, per_client=args.per_client,
            )  # fmt: skip
            acknowledged = time.perf_counter() - began
            try:
                jobs = await wait_ended(client, job_ids, within=300)
            except AssertionError as exc:
                print(f"{label} burst {index}: {exc}")
                bad += len(job_ids)
                continue
            ended = time.perf_counter() - began
            failed = [job for job in jobs.values() if job.state != types_pb2.JOB_STATE_SUCCEEDED]
            for job in failed[:5]:
                print(f"  {job.id} {types_pb2.JobState.Name(job.state)}: {job.reason}")
            bad += len(failed)
            rows.append(
                f"| {label} | {index} | {len(job_ids)} | {len(jobs) - len(failed)} | "
                f"{acknowledged:.1f} s | {ended:.1f} s |"
            )
            print(rows[-1], flush=True)
    return rows, bad


async def measure(root: Path, args: argparse.Namespace) -> tuple[list[str], int]:
    single = create_lab(root / "single")
    try:
        node = single.start_node("node-1", data_dir=single.first_data_dir)
        rows, bad = await bursts(single, [node], args, "one node")
    finally:
        single.stop_all()
    cluster = create_lab(root / "cluster")
    try:
        nodes = start_cluster(cluster, 3, env=FAST_VOTERS)
        await wait_agreed(nodes, cluster, voters=3)
        more_rows, more_bad = await bursts(cluster, nodes, args, "3 nodes")
    finally:
        cluster.stop_all()
    return rows + more_rows, bad + more_bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bursts", type=int, default=10)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=125)
    args = parser.parse_args()
    print("| where | burst | acknowledged | succeeded | all acknowledged | all ended |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="murmur-bench-bursts-") as root:
        _, bad = asyncio.run(measure(Path(root), args))
    print(f"jobs that did not succeed: {bad}")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
