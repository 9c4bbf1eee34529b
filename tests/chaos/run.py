"""``python -m tests.chaos.run``: randomized fault rounds against real five-node clusters.

    python -m tests.chaos.run --rounds 100 --seed 7
    python -m tests.chaos.run --short   # what tests/node/control/consensus/test_chaos.py runs

Rounds are played in sessions of ``--rounds-per-session`` (a fresh cluster each,
checked at its end): a session's history stays readable, and one bad round
cannot hide in thousands of jobs. With ``--seed`` the fault schedule is
reproducible; the real cluster's timings never fully are. Prints one line per
round, a summary per session and totals; ``--report FILE`` writes them as JSON.
Exit status 1 when any invariant was violated, 2 when a session could not run.

Where network namespaces can be made (root, iproute2), the command creates the
hosts, re-executes itself inside the hub namespace (``--inside-hub``, internal)
and removes them afterwards; elsewhere it runs on loopback without partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.chaos.harness import SessionConfig, SessionResult, run_session
from tests.chaos.network import rerun_in_hub
from tests.chaos.schedule import FaultStep, random_schedule, short_schedule
from tests.support.netns import netns_unavailable

SIZE = 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.run", description=__doc__)
    parser.add_argument("--rounds", type=int, default=100, help="fault rounds in all")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault schedule")
    parser.add_argument("--rounds-per-session", type=int, default=10)
    parser.add_argument("--rate", type=float, default=2.5, help="submissions a second")
    parser.add_argument("--short", action="store_true", help="the make-test version")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--report", type=Path, default=None, help="results as JSON (default: WORKDIR/report.json)"
    )
    parser.add_argument("--keep", action="store_true", help="keep workdirs of clean sessions")
    parser.add_argument(
        "--time-budget", type=float, default=None,
        help="seconds; start no session that would likely end after it",
    )  # fmt: skip
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
            return rerun_in_hub("tests.chaos.run", argv if argv is not None else sys.argv[1:], SIZE)
        if args.require_netns:
            print(f"chaos: partitions are required but impossible here: {why}", file=sys.stderr)
            return 2
        print(f"chaos: no partitions ({why}); loopback hosts", file=sys.stderr)
    elif args.require_netns and args.inside_hub is None:
        print("chaos: --no-netns contradicts --require-netns", file=sys.stderr)
        return 2
    # Interrupts end a session through its clean-up (the nodes are killed): also when
    # started in the background, where SIGINT comes ignored, and on SIGTERM.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))
    return asyncio.run(_sessions(args))


async def _sessions(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 20)
    partitions = args.inside_hub is not None
    root = args.workdir or Path(tempfile.mkdtemp(prefix="murmur-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.short:
        plans = [short_schedule(partitions=partitions)]
    else:
        plans = _plans(seed, args.rounds, args.rounds_per_session, partitions=partitions)
    print(
        f"chaos: seed {seed}, {sum(len(p) for p in plans)} rounds in {len(plans)} sessions, "
        f"{'partitions on namespaced hosts' if partitions else 'loopback, no partitions'}, "
        f"workdir {root}",
        flush=True,
    )
    began = time.monotonic()
    results: list[SessionResult] = []
    failed_to_run: list[str] = []
    for number, steps in enumerate(plans, start=1):
        elapsed = time.monotonic() - began
        if args.time_budget is not None and results:
            per_round = elapsed / sum(len(r.rounds) for r in results)
            if elapsed + per_round * len(steps) + 60 > args.time_budget:
                print(f"chaos: time budget reached after {len(results)} sessions", flush=True)
                break
        workdir = root / f"session-{number}"
        config = SessionConfig(
            workdir=workdir,
            steps=steps,
            seed=seed + number - 1,
            size=SIZE,
            rate=args.rate,
            netns_prefix=args.inside_hub,
        )
        print(f"-- session {number} (seed {config.seed}): {workdir}", flush=True)
        try:
            result = await run_session(config, say=lambda line: print(line, flush=True))
        except Exception as exc:  # a session that cannot run is reported, not hidden
            failed_to_run.append(f"session {number}: {exc!r}")
            print(f"chaos: session {number} could not run: {exc!r}", flush=True)
            continue
        results.append(result)
        _print_session(number, result)
        if not result.report.violations and not args.keep:
            _drop_bulk(workdir)
    totals = _totals(results)
    print(
        "chaos totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()),
        flush=True,
    )
    report_path = args.report or root / "report.json"
    report: dict[str, Any] = {
        "seed": seed,
        "partitions": partitions,
        "seconds": round(time.monotonic() - began, 1),
        "totals": totals,
        "failed_to_run": failed_to_run,
        "sessions": [r.to_json() for r in results],
    }
    report_path.write_text(json.dumps(report, indent=1))
    print(f"chaos: report in {report_path}", flush=True)
    if totals["violations"]:
        return 1
    return 2 if failed_to_run or not results else 0


def _plans(seed: int, rounds: int, per_session: int, *, partitions: bool) -> list[list[FaultStep]]:
    """The schedule of ``rounds`` cut into sessions; round numbers run on across them."""
    plans: list[list[FaultStep]] = []
    done = 0
    number = 0
    while done < rounds:
        count = min(per_session, rounds - done)
        steps = random_schedule(seed + number, count, partitions=partitions)
        plans.append([_renumber(step, done + step.round) for step in steps])
        done += count
        number += 1
    return plans


def _renumber(step: FaultStep, number: int) -> FaultStep:
    return FaultStep(
        round=number, kind=step.kind, pause=step.pause, pick=step.pick,
        with_leader=step.with_leader, size=step.size, settle=step.settle,
    )  # fmt: skip


def _print_session(number: int, result: SessionResult) -> None:
    counts = result.report.counts()
    print(
        f"session {number}: {len(result.rounds)} rounds in {result.seconds:.0f} s, "
        f"settled {'yes' if result.settled else 'NO'} in {result.settle_seconds:.0f} s; "
        + ", ".join(f"{k} {v}" for k, v in counts.items()),
        flush=True,
    )
    for line in result.report.violations:
        print(f"  VIOLATION {line}", flush=True)
    for line in result.report.anomalies[:20]:
        print(f"  anomaly {line}", flush=True)


def _totals(results: list[SessionResult]) -> dict[str, int]:
    totals: dict[str, int] = {"sessions": len(results), "rounds": 0}
    for result in results:
        totals["rounds"] += len(result.rounds)
        for key, value in result.report.counts().items():
            totals[key] = totals.get(key, 0) + value
    totals["violations"] = sum(len(r.report.violations) for r in results)
    totals["anomalies"] = sum(len(r.report.anomalies) for r in results)
    totals["unsettled_sessions"] = sum(1 for r in results if not r.settled)
    totals["rounds_without_agreement"] = sum(
        1 for r in results for summary in r.rounds if not summary.leader_after
    )
    return totals


def _drop_bulk(workdir: Path) -> None:
    """A clean session keeps its history.json and node logs; run dirs go."""
    for runs in workdir.glob("lab/*/runs"):
        shutil.rmtree(runs, ignore_errors=True)
    shutil.rmtree(workdir / "results", ignore_errors=True)


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
