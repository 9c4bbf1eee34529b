"""``python -m tests.soak.run``: a mixed workload against a real 3-5 node cluster for a
set time, checked continuously (``make soak``).

    python -m tests.soak.run --minutes 60 --nodes 3 --seed 1 --report soak.json
    python -m tests.soak.run --minutes 1 --seed 1        # what tests/soak runs

Prints a progress line per interval and a final report; ``--report FILE`` writes
the report as JSON (default: WORKDIR/report.json), WORKDIR/history.json holds
every submission, fault, cancel and final job. Exit status 1 on any violation,
2 when the soak could not run.

Where network namespaces can be made (root, iproute2), the command creates the
hosts, re-executes itself inside the hub namespace (``--inside-hub``, internal)
and removes them afterwards; elsewhere it runs on loopback without partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.chaos.network import rerun_in_hub
from tests.soak.session import CouldNotRun, SoakConfig, run_soak
from tests.support.netns import netns_unavailable


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.soak.run", description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the load runs")
    parser.add_argument("--nodes", type=int, default=3, choices=(3, 4, 5))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--clients", type=int, default=4, help="client processes per burst")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--report", type=Path, default=None, help="the report as JSON")
    parser.add_argument("--keep", action="store_true", help="keep run dirs of a clean soak")
    parser.add_argument("--gangs", action="store_true", help="submit two-node gangs too")
    parser.add_argument("--no-netns", action="store_true", help="loopback only, no partitions")
    parser.add_argument(
        "--require-netns", action="store_true", help="fail rather than run without partitions"
    )
    parser.add_argument("--inside-hub", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.inside_hub is None and not args.no_netns:
        why = netns_unavailable()
        if why is None:
            return rerun_in_hub(
                "tests.soak.run", argv if argv is not None else sys.argv[1:], args.nodes
            )
        if args.require_netns:
            print(f"soak: partitions are required but impossible here: {why}", file=sys.stderr)
            return 2
        print(f"soak: no partitions ({why}); loopback hosts", file=sys.stderr)
    elif args.require_netns and args.inside_hub is None:
        print("soak: --no-netns contradicts --require-netns", file=sys.stderr)
        return 2
    # Interrupts end the soak through its clean-up (the nodes are killed): also when
    # started in the background, where SIGINT comes ignored, and on SIGTERM.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    return asyncio.run(_soak(args))


async def _soak(args: argparse.Namespace) -> int:
    root = args.workdir or Path(tempfile.mkdtemp(prefix="murmur-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    config = SoakConfig(
        workdir=root,
        minutes=args.minutes,
        nodes=args.nodes,
        seed=args.seed,
        clients=args.clients,
        netns_prefix=args.inside_hub,
        gangs=args.gangs,
    )
    print(
        f"soak: seed {args.seed}, {args.nodes} nodes, {args.minutes:g} min of load, "
        f"{'partitions on namespaced hosts' if args.inside_hub else 'loopback, no partitions'}, "
        f"workdir {root}",
        flush=True,
    )
    report_path = args.report or root / "report.json"
    try:
        report = await run_soak(config, say=lambda line: print(line, flush=True))
    except CouldNotRun as exc:
        print(f"soak: could not run: {exc}", flush=True)
        report_path.write_text(json.dumps({"could_not_run": str(exc)}, indent=1))
        return 2
    report_path.write_text(json.dumps(report, indent=1))
    _print_report(report)
    print(f"soak: report in {report_path}", flush=True)
    if not report["violations"] and not args.keep:
        for runs in root.glob("lab/*/runs"):
            shutil.rmtree(runs, ignore_errors=True)
        shutil.rmtree(root / "results", ignore_errors=True)
    return 1 if report["violations"] else 0


def _print_report(report: dict[str, Any]) -> None:
    jobs, checks, faults = report["jobs"], report["checks"], report["faults"]
    cancels = report["cancels"]
    lines = [
        f"soak report (seed {report['seed']}, {report['nodes']} nodes, "
        f"{report['minutes']:g} min, {'with' if report['partitions'] else 'no'} partitions, "
        f"{report['seconds']:.0f} s in all):",
        f"  jobs: submitted {jobs['submitted']} acknowledged {jobs['acknowledged']} "
        f"succeeded {jobs['succeeded']} failed {jobs['failed']} cancelled {jobs['cancelled']} "
        f"lost-state {jobs['lost_state']} lost {jobs['lost']} unfinished {jobs['unfinished']} "
        f"(rerun {jobs['rerun']}, executions {jobs['executions']}, bursts {jobs['bursts']})",
        f"  cancels: {cancels['acknowledged']} acknowledged, caught "
        + ", ".join(f"{k} {v}" for k, v in cancels["by_state_seen"].items()),
        f"  faults: kills {faults['kill_leader']} leader + {faults['kill_follower']} follower, "
        f"stalls {faults['stall']}, partitions {faults['partition']}; leader agreed "
        f"{faults['agreement_after_repair_p50_s']} s p50 / {faults['agreement_after_repair_max_s']}"
        " s max after a repair",
        f"  checks: stuck {checks['stuck']}, lost {checks['lost']}, double runs "
        f"{checks['double_runs']}, GPU conflicts {checks['gpu_conflicts']}, orphans "
        f"{checks['orphans']}, status violations {checks['status_violations']} "
        f"({checks['status_observations']} answers, {checks['terms_seen']} terms, leaderless "
        f"{checks['leaderless_seconds']:g} s, longest {checks['longest_leaderless_seconds']:g} s), "
        f"resource violations {checks['resource_violations']}",
    ]
    for node, entry in report["daemons"].items():
        figures = ", ".join(
            f"{metric} {values[0]:g} -> {values[1]:g}"
            for metric, values in entry.items()
            if metric != "processes"
        )
        lines.append(f"  {node} ({entry['processes']} processes): {figures}")
    for summary in report["daemon_processes"]:
        if summary["judged"]:
            slopes = ", ".join(
                f"{metric} {summary[metric].get('start')} -> {summary[metric].get('end')} "
                f"({summary[metric].get('slope_per_hour'):+}/h)"
                for metric in ("rss_mib", "fds", "threads", "tasks")
                if "start" in summary[metric]
            )
            lines.append(f"  judged {summary['node']} pid {summary['pid']}: {slopes}")
    lines += [f"  VIOLATION {line}" for line in report["violations"]]
    lines += [f"  anomaly {line}" for line in report["anomalies"][:20]]
    lines += [f"  note {line}" for line in report["notes"][:20]]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
