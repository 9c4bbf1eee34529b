"""The frozen build beside the venv install, in one run (docs/benchmarks.md, issue 16).

    make dist && python -m tests.bench.bench_dist

For each of the onedir build, the onefile build and this checkout's venv
(``.venv/bin/murmur``): the size on disk, the median wall time of ``murmur
--version`` and of ``murmur status`` against a running node, a node's start to
ready (from the spawn to its ``node.ready`` log line, on a fresh data dir) and its
RSS after 10 s idle (the onefile's is its two processes: the unpacking parent and
the interpreter). Every figure is a median of RUNS runs, all on this machine in one
run, one after another.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ONEDIR = ROOT / "dist" / "onedir" / "murmur"
ONEFILE = ROOT / "dist" / "onefile" / "murmur"
VENV = ROOT / ".venv" / "bin" / "murmur"
IDLE_SECONDS = 10.0


def size_mib(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def median_wall(command: Sequence[str], runs: int, env: dict[str, str]) -> float:
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=60)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


def rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` and of its children (the onefile's interpreter)."""
    total = 0.0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(child) for child in children.read_text().split()]
    for one in pids:
        for line in Path(f"/proc/{one}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def start_node(
    murmur: Sequence[str], work: Path, port: int, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], float, Path]:
    """A fresh CA node; returns it, its start-to-ready seconds, and its log."""
    data_dir = work / f"node-{port}"
    subprocess.run(
        [*murmur, "ca", "init", "--data-dir", str(data_dir),
         "--identity-out", str(work / "identity.pem")],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    log = work / f"node-{port}.log"
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*murmur, "node", "start", "--name", "bench", "--data-dir", str(data_dir),
             "--listen", f"127.0.0.1:{port}", "--simulate-gpus", "2xA100-80GB"],
            env=env, stdout=out, stderr=out, start_new_session=True,
        )  # fmt: skip
    deadline = started + 60
    while b'"event": "node.ready"' not in log.read_bytes():
        if time.perf_counter() > deadline or process.poll() is not None:
            raise RuntimeError(f"node did not get ready: {log.read_text()[-2000:]}")
        time.sleep(0.005)
    return process, time.perf_counter() - started, log


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per CLI figure")
    parser.add_argument("--starts", type=int, default=5, help="node starts per build")
    args = parser.parse_args()
    builds = {"onedir": [str(ONEDIR / "murmur")], "onefile": [str(ONEFILE)], "venv": [str(VENV)]}
    for name, command in builds.items():
        if not Path(command[0]).exists():
            raise SystemExit(f"{name}: {command[0]} is missing (make dist; make install)")
    results: dict[str, dict[str, float]] = {name: {} for name in builds}
    results["onedir"]["size_mib"] = size_mib(ONEDIR)
    results["onefile"]["size_mib"] = size_mib(ONEFILE)

    with tempfile.TemporaryDirectory(prefix="bench-dist-") as scratch:
        work = Path(scratch)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(work), "LANG": "C.UTF-8"}
        env["MURMUR_HOME"] = str(work / "home")
        target, _, _ = start_node(builds["venv"], work / "target", 7191, env)
        try:
            for name, command in builds.items():
                results[name]["version_s"] = median_wall([*command, "--version"], args.runs, env)
                status = [*command, "status", "--node", "127.0.0.1:7191",
                          "--identity", str(work / "target" / "identity.pem")]  # fmt: skip
                results[name]["status_s"] = median_wall(status, args.runs, env)
        finally:
            stop(target)
        port = 7200
        for name, command in builds.items():
            readies = []
            for run in range(args.starts):
                port += 2
                run_dir = work / f"{name}-{run}"
                run_dir.mkdir()
                process, ready, _ = start_node(command, run_dir, port, env)
                try:
                    readies.append(ready)
                    if run == args.starts - 1:
                        time.sleep(IDLE_SECONDS)
                        results[name]["idle_rss_mib"] = rss_mib(process.pid)
                finally:
                    stop(process)
                    shutil.rmtree(run_dir, ignore_errors=True)
            results[name]["start_to_ready_s"] = statistics.median(readies)

    print(json.dumps(results, indent=2))
    print()
    print("| | onedir | onefile | venv |")
    print("| --- | --- | --- | --- |")
    rows = [
        ("size on disk", "size_mib", "{:.0f} MiB"),
        ("`murmur --version`", "version_s", "{:.3f} s"),
        ("`murmur status`", "status_s", "{:.3f} s"),
        ("node start → ready", "start_to_ready_s", "{:.2f} s"),
        (f"node RSS, {IDLE_SECONDS:g} s idle", "idle_rss_mib", "{:.0f} MiB"),
    ]
    for label, key, form in rows:
        cells = [
            form.format(results[name][key]) if key in results[name] else "—" for name in builds
        ]
        print(f"| {label} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
