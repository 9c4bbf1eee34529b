"""Silent failures on real clusters: ``kill -STOP`` detection, and false "dead"
verdicts while 10% of the nodes stall 2-5 s at a time (SIGSTOP/SIGCONT).

Run with ``python -m tests.bench.bench_silent_failures [--sizes 5,32] [--stops K]
[--stall-minutes M] [--profiles murmur,memberlist]``.

Separate ``murmur node start`` processes on 127.0.0.x over mutual TLS, started and
converged as in :mod:`tests.bench.bench_membership`. For each size and profile:

1. ``kill -STOP`` of a random node (never node-1), K times: the time from the
   signal to each other node's ``membership.dead`` line about it (log times, wall
   clock, milliseconds), per observer and per stop (until every node knew). Then
   ``kill -CONT``: the time until every node logged it back (``membership.joined``).
   A stopped process refuses nothing (its kernel still accepts connections), so
   this is the path a hung host, a pulled cable or a kernel panic takes.
2. Stalls: 10% of the nodes (at least one, never node-1) are each stopped for 2-5 s,
   continued for 5-20 s, stopped again... for M minutes. Every ``membership.dead``
   line is then classified:

   - a *stall verdict*: about a node during one of its stalls or less than
     ``--grace`` seconds after it (news already on its way). From outside, a node
     stalled 5 s and a stopped one are the same while it lasts;
   - a *false verdict*: about any other running node. Lifeguard's false positive
     (a healthy member declared failed because slow members accused it) is the
     first kind listed, "about never-stalled nodes"; the second, "about stallers
     between stalls", is a staller declared dead while it was running.

   An observer that was itself stopped reads its backlog when continued: a verdict
   it logs less than ``--grace`` seconds after its own stall counts from the start
   of that stall. For each stall that made anyone doubt the node (suspect or dead),
   the recovery is the time from ``kill -CONT`` until every other node had logged
   it alive again (an observer stalled meanwhile counts from its own return).

Profiles: ``murmur`` (the defaults), ``memberlist`` (memberlist's suspicion: a
lower bound of ``suspicion_mult`` probe intervals, no confirmation probes; set
through ``MURMUR_GOSSIP_*``). ``--gossip FIELD=VALUE`` adds settings to every
profile. The machine has 2 cores: at N=32 the nodes share them 16 to a core.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import random
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from murmur.certs import Role
from tests.bench.bench_membership import (
    LogReader,
    log_time,
    percentile,
    start_nodes,
    wait_all_see,
    wait_for_events,
)
from tests.support.nodes import NodeProcess, create_lab

PROFILES: dict[str, dict[str, str]] = {
    "murmur": {},
    "memberlist": {
        "MURMUR_GOSSIP_SUSPICION_MIN_MULT": "4",
        "MURMUR_GOSSIP_CONFIRMATION_PROBES": "0",
    },
}

DOUBT_EVENTS = ("membership.suspect", "membership.dead")
BACK_EVENTS = ("membership.alive", "membership.joined")


@dataclass
class Record:
    """One membership line of one node's log."""

    at: float
    observer: str
    event: str
    peer: str


@dataclass
class Window:
    """``name`` was stopped from ``start`` to ``end`` (wall clock)."""

    name: str
    start: float
    end: float


@dataclass
class Result:
    n: int
    profile: str
    stop_all_seconds: list[float] = field(default_factory=list)
    """Per stop: until every other node logged it dead."""
    stop_observer_seconds: list[float] = field(default_factory=list)
    back_all_seconds: list[float] = field(default_factory=list)
    """Per stop: from kill -CONT until every other node logged it back."""
    stall_minutes: float = 0.0
    stalls: int = 0
    stalls_declared_dead: int = 0
    stall_verdicts: int = 0
    false_about_healthy: list[str] = field(default_factory=list)
    false_about_stallers: list[str] = field(default_factory=list)
    recoveries: list[float] = field(default_factory=list)


def read_records(reader: LogReader, nodes: list[NodeProcess]) -> list[Record]:
    records = []
    for node in nodes:
        for record in reader.new_records(node):
            event = str(record.get("event", ""))
            if event.startswith("membership.") and record.get("peer"):
                records.append(Record(log_time(record), node.name, event, str(record["peer"])))
    return records


def measure_stops(
    nodes: list[NodeProcess], reader: LogReader, stops: int, rng: random.Random, result: Result
) -> None:
    for _ in range(stops):
        victim = rng.choice(nodes[1:])
        others = [node for node in nodes if node is not victim]
        read_records(reader, nodes)  # skip what happened so far
        stopped_at = time.time()
        victim.process.send_signal(signal.SIGSTOP)
        try:
            times = wait_for_events(reader, others, "membership.dead", victim.name, stopped_at)
        finally:
            continued_at = time.time()
            victim.process.send_signal(signal.SIGCONT)
        result.stop_observer_seconds += times
        result.stop_all_seconds.append(max(times))
        back = wait_for_events(reader, others, "membership.joined", victim.name, continued_at)
        result.back_all_seconds.append(max(back))
        time.sleep(2 + rng.uniform(0, 1))


def run_stalls(stallers: list[NodeProcess], minutes: float, rng: random.Random) -> list[Window]:
    """Stop each staller 2-5 s, continue it 5-20 s, repeatedly, for ``minutes``;
    returns the stalls, in wall-clock time."""
    windows: list[Window] = []
    open_windows: dict[str, Window] = {}
    by_name = {node.name: node for node in stallers}
    started = time.monotonic()
    until = started + minutes * 60
    due = [(started + rng.uniform(0, 20), "stop", node.name) for node in stallers]
    heapq.heapify(due)
    try:
        while due:
            at, action, name = heapq.heappop(due)
            if action == "stop" and at >= until:
                continue
            time.sleep(max(0.0, at - time.monotonic()))
            process = by_name[name].process
            if action == "stop":
                process.send_signal(signal.SIGSTOP)
                open_windows[name] = Window(name, time.time(), math.inf)
                windows.append(open_windows[name])
                heapq.heappush(due, (time.monotonic() + rng.uniform(2, 5), "cont", name))
            else:
                process.send_signal(signal.SIGCONT)
                open_windows.pop(name).end = time.time()
                heapq.heappush(due, (time.monotonic() + rng.uniform(5, 20), "stop", name))
    finally:
        for node in stallers:
            node.process.send_signal(signal.SIGCONT)
        for window in open_windows.values():
            window.end = time.time()
    return windows


def news_start(record: Record, windows: list[Window], grace: float) -> float:
    """The earliest time the news behind ``record`` may date from: its own time, or
    the start of the observer's stall if it logged this just after continuing."""
    for window in windows:
        if window.name == record.observer and window.start <= record.at < window.end + grace:
            return window.start
    return record.at


def classify(
    records: list[Record],
    windows: list[Window],
    stallers: set[str],
    grace: float,
    result: Result,
) -> None:
    declared: set[int] = set()
    for record in records:
        if record.event != "membership.dead":
            continue
        earliest = news_start(record, windows, grace)
        hit = [
            index
            for index, w in enumerate(windows)
            if w.name == record.peer and w.start <= record.at and earliest < w.end + grace
        ]
        if hit:
            result.stall_verdicts += 1
            declared.update(hit)
        elif record.peer in stallers:
            result.false_about_stallers.append(f"{record.observer}: {record.peer} at {record.at}")
        else:
            result.false_about_healthy.append(f"{record.observer}: {record.peer} at {record.at}")
    result.stalls = len(windows)
    result.stalls_declared_dead = len(declared)
    observers = sorted({r.observer for r in records} | stallers)
    for window in windows:
        doubted = any(
            r.peer == window.name
            and r.event in DOUBT_EVENTS
            and window.start <= r.at < window.end + grace
            for r in records
        )
        if doubted:
            result.recoveries.append(recovery(window, records, windows, observers))


def recovery(
    window: Window, records: list[Record], windows: list[Window], observers: list[str]
) -> float:
    """Seconds from the end of ``window`` until every other node held its node alive
    again (inf if some never did before that node's next stall)."""
    later = [w.start for w in windows if w.name == window.name and w.start > window.end]
    until = min(later, default=math.inf)
    slowest = 0.0
    for observer in observers:
        if observer == window.name:
            continue
        alive, back = True, window.end
        for r in records:
            if r.observer != observer or r.peer != window.name or r.at > until:
                continue
            if r.event not in DOUBT_EVENTS + BACK_EVENTS:
                continue
            now_alive = r.event in BACK_EVENTS
            if r.at <= window.end:
                alive = now_alive
            elif not alive and now_alive:
                back, alive = r.at, True
                break
            elif alive:
                break
        if not alive:
            return math.inf
        own_stalls = [w for w in windows if w.name == observer]
        ready = max(
            [window.end]
            + [w.end for w in own_stalls if window.start < w.end < math.inf and w.start < back]
        )
        slowest = max(slowest, back - ready)
    return slowest


def bench(
    n: int, profile: str, args: argparse.Namespace, env: dict[str, str], root: Path
) -> Result:
    lab = create_lab(root)
    lab.issue_identity("bench", Role.ADMIN)
    nodes: list[NodeProcess] = []
    result = Result(n, profile)
    rng = random.Random(args.seed * 1000 + n)
    try:
        start_nodes(lab, n, 1, nodes, env)
        converged = asyncio.run(wait_all_see(nodes, lab.admin_identity))
        print(f"  N={n} {profile}: converged in {converged:.1f} s", flush=True)
        time.sleep(5)  # let the start-up's broadcasts drain
        reader = LogReader()
        read_records(reader, nodes)
        measure_stops(nodes, reader, args.stops, rng, result)
        print(f"  N={n} {profile}: {args.stops} stops measured", flush=True)
        if args.stall_minutes > 0:
            time.sleep(5)
            read_records(reader, nodes)
            stallers = rng.sample(nodes[1:], max(1, n // 10))
            windows = run_stalls(stallers, args.stall_minutes, rng)
            time.sleep(5)  # the last verdicts and recoveries reach the logs
            records = read_records(reader, nodes)
            result.stall_minutes = args.stall_minutes
            classify(records, windows, {s.name for s in stallers}, args.grace, result)
        return result
    finally:
        for node in nodes:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
        lab.stop_all()


def fmt(values: list[float], q: float) -> str:
    return "—" if not values else f"{percentile(values, q):.2f}"


def report(results: list[Result]) -> None:
    print()
    print(
        "| N | profile | kill -STOP → all know p50 / p99 (s) | per observer p50 / p99 (s) "
        "| kill -CONT → back everywhere p50 / max (s) | stops |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r.n} | {r.profile} | {fmt(r.stop_all_seconds, 0.5)} / "
            f"{fmt(r.stop_all_seconds, 0.99)} | {fmt(r.stop_observer_seconds, 0.5)} / "
            f"{fmt(r.stop_observer_seconds, 0.99)} | {fmt(r.back_all_seconds, 0.5)} / "
            f"{fmt(r.back_all_seconds, 1.0)} | {len(r.stop_all_seconds)} |"
        )
    if not any(r.stall_minutes for r in results):
        return
    print()
    print(
        "| N | profile | stalls (min) | stalls declared dead | false verdicts: never-stalled "
        "nodes / stallers between stalls | recovery after kill -CONT p50 / max (s) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        if not r.stall_minutes:
            continue
        finite = [x for x in r.recoveries if math.isfinite(x)]
        never = len(r.recoveries) - len(finite)
        print(
            f"| {r.n} | {r.profile} | {r.stalls} ({r.stall_minutes:g}) | "
            f"{r.stalls_declared_dead} ({r.stall_verdicts} verdicts) | "
            f"{len(r.false_about_healthy)} / {len(r.false_about_stallers)} | "
            f"{fmt(finite, 0.5)} / {fmt(finite, 1.0)}"
            f"{f' ({never} never)' if never else ''} |"
        )
    for r in results:
        for line in (r.false_about_healthy + r.false_about_stallers)[:10]:
            print(f"  false verdict, N={r.n} {r.profile}: {line}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="5,32", help="comma-separated cluster sizes")
    parser.add_argument("--stops", type=int, default=20, help="kill -STOP trials per size")
    parser.add_argument("--stall-minutes", type=float, default=5.0, help="0 skips the stalls")
    parser.add_argument("--profiles", default="murmur", help="murmur, memberlist or both")
    parser.add_argument("--grace", type=float, default=1.0, help="see the module doc")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--gossip",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a gossip setting for every node (MURMUR_GOSSIP_<FIELD>)",
    )
    args = parser.parse_args()
    extra = {}
    for setting in args.gossip:
        name, _, value = setting.partition("=")
        extra[f"MURMUR_GOSSIP_{name.upper()}"] = value
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        for profile in args.profiles.split(","):
            env = {**PROFILES[profile], **extra}
            with tempfile.TemporaryDirectory(prefix=f"murmur-silent-{n}-") as tmp:
                print(f"N={n} {profile} {env or ''}: starting...", flush=True)
                result = bench(n, profile, args, env, Path(tmp))
            results.append(result)
            report([result])
    print("\nAll:")
    report(results)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
