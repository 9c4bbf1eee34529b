"""Import weight: what loading the daemon and the client costs, beside another checkout.

    python -m tests.bench.bench_imports                       # this checkout
    python -m tests.bench.bench_imports --before /tmp/old     # and an older one, same run

Each figure is the median wall time of a fresh interpreter doing only the import
(``python -c "import X"``), less nothing: the bare interpreter's own start is shown
beside it. Memory is the child's peak RSS (``ru_maxrss``). A checkout from before the
one import name (issue 12) imports ``node.daemon``; this one ``murmur.node.daemon``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = 15


def interpreter_of(checkout: Path) -> str:
    python = checkout / ".venv" / "bin" / "python"
    return str(python) if python.exists() else sys.executable


def daemon_module(checkout: Path) -> str:
    return "murmur.node.daemon" if (checkout / "murmur" / "node").exists() else "node.daemon"


def measure(python: str, code: str, cwd: Path) -> tuple[float, float]:
    """Median wall seconds and median peak RSS (MB, the child's own ``ru_maxrss``
    read as its last act) of ``python -c CODE``."""
    walls, peaks = [], []
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root")}
    report = "; import resource as _r; print(_r.getrusage(_r.RUSAGE_SELF).ru_maxrss)"
    for _ in range(RUNS):
        start = time.perf_counter()
        done = subprocess.run(
            [python, "-c", code + report], cwd=cwd, env=env, check=True, capture_output=True
        )
        walls.append(time.perf_counter() - start)
        peaks.append(int(done.stdout.split()[-1]) / 1024)
    return statistics.median(walls), statistics.median(peaks)


def rows(label: str, checkout: Path) -> list[str]:
    python = interpreter_of(checkout)
    daemon = daemon_module(checkout)
    cases = [
        ("bare interpreter", "pass"),
        ("`import murmur`", "import murmur"),
        ("`import murmur` + `murmur.AsyncClient`", "import murmur; murmur.AsyncClient"),
        (f"`import {daemon}`", f"import {daemon}"),
    ]
    found = []
    for what, code in cases:
        wall, peak = measure(python, code, checkout)
        found.append(f"| {label} | {what} | {wall * 1000:.0f} ms | {peak:.1f} MB |")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", type=Path, help="another checkout (with its own .venv)")
    args = parser.parse_args()
    print(f"# import weight ({os.cpu_count()} cores, median of {RUNS} fresh interpreters)")
    print("| code | import | wall time | peak RSS |")
    print("| --- | --- | --- | --- |")
    if args.before:
        for line in rows(f"before ({args.before})", args.before):
            print(line)
    for line in rows("this checkout", ROOT):
        print(line)


if __name__ == "__main__":
    main()
