"""What the cluster's audit trail costs submissions: the rate of acknowledged
submissions (each audited, so each shipped to the control log before it answers)
on one node and through a follower of a 3-node cluster, and how long a call waits
for its record. ``python -m tests.bench.bench_audit [--per-client 100] [--rounds 2]``

Run the same command on a tree without the trail for the figures before it
(docs/benchmarks.md says how they were taken).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from tests.bench.bench_jobs import fresh_node, submit_rate
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS, wait_agreed
from tests.support.cluster import start_cluster
from tests.support.nodes import Lab, create_lab


async def measure(root: Path, labs: list[Lab], per_client: int, rounds: int) -> list[str]:
    rows = []
    node = fresh_node(root, labs)
    lab = labs[-1]
    for round_number in range(1, rounds + 1):
        one = await submit_rate(lab, node, 1, per_client)
        eight = await submit_rate(lab, node, 8, per_client)
        rows.append(f"| one node, 1 client | {round_number} | {one:.0f} jobs/s |")
        rows.append(f"| one node, 8 clients | {round_number} | {eight:.0f} jobs/s |")
    node.terminate()

    cluster_lab = create_lab(root / f"lab-{len(labs)}")
    labs.append(cluster_lab)
    nodes = start_cluster(cluster_lab, 3, env=FAST_VOTERS)
    leader, _ = await wait_agreed(nodes, cluster_lab, voters=3)
    follower = next(node for node in nodes if node.name != leader)
    for round_number in range(1, rounds + 1):
        one = await submit_rate(cluster_lab, follower, 1, per_client)
        eight = await submit_rate(cluster_lab, follower, 8, per_client)
        rows.append(f"| 3 nodes, via a follower, 1 client | {round_number} | {one:.0f} jobs/s |")
        rows.append(f"| 3 nodes, via a follower, 8 clients | {round_number} | {eight:.0f} jobs/s |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-client", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    labs: list[Lab] = []
    with tempfile.TemporaryDirectory(prefix="murmur-bench-audit-") as root:
        try:
            rows = asyncio.run(measure(Path(root), labs, args.per_client, args.rounds))
        finally:
            for lab in labs:
                lab.stop_all()
    print("| submissions accepted | round | rate |")
    print("| --- | --- | --- |")
    for line in rows:
        print(line)


if __name__ == "__main__":
    main()
