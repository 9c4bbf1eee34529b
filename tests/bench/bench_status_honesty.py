"""Status through leader kills (issue 11, "honest status"): a real 3-node cluster, the
leader killed (kill -9) and restarted ``--kills`` times, GetStatus polled every 20 ms
on both survivors throughout. Counts the answers and every one that named two leaders
in one term or the dead leader in a later term (there must be none).

``python -m tests.bench.bench_status_honesty [--kills 100]``; exit status 1 on any.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from tests.bench.run import percentile
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS
from tests.node.control.consensus.test_status_honesty_processes import leader_kill_rounds
from tests.support.cluster import start_cluster
from tests.support.nodes import create_lab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="murmur-bench-status-") as root:
        lab = create_lab(Path(root))
        try:
            nodes = start_cluster(lab, 3, env=FAST_VOTERS)
            seen = asyncio.run(leader_kill_rounds(lab, nodes, args.kills))
        finally:
            lab.stop_all()
    print(f"leader kills: {args.kills}; GetStatus answers polled: {seen.polled}")
    print(f"terms with a leader named: {len(seen.leader_of_term)}")
    print(
        f"kill -> both survivors name the new leader: p50 {percentile(seen.failovers, 0.5):.2f} s,"
        f" p99 {percentile(seen.failovers, 0.99):.2f} s (polled, includes status lag)"
    )
    print(f"answers naming a second leader in a term or a dead one later: {len(seen.violations)}")
    for line in seen.violations[:20]:
        print(f"  {line}")
    raise SystemExit(1 if seen.violations else 0)


if __name__ == "__main__":
    main()
