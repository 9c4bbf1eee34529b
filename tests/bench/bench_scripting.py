"""Issue 17, side by side in one run: a 1,000-task array accepted and drained on 8
(simulated) GPUs, a shell loop of ``murmur job submit``, and the wall time of
``murmur --help``, ``murmur status`` and ``murmur job submit`` against the
interpreter's own start. Results go to docs/benchmarks.md.

    python -m tests.bench.bench_scripting [--arrays 5] [--runs 21] [--loop 50]

Every CLI call is a fresh process of the venv's ``murmur``, as a script's would be,
with its bytecode cached (a first run warms it; ``PYTHONDONTWRITEBYTECODE`` is
dropped for the CLI's processes, their cache kept outside the tree).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.nodes import create_lab

VENV_MURMUR = Path(sys.executable).with_name("murmur")


def _median_ms(command: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - began)
        if result.returncode != 0:
            raise RuntimeError(f"{command} failed: {result.stderr.decode()[-500:]}")
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arrays", type=int, default=5, help="1,000-task arrays to time")
    parser.add_argument("--runs", type=int, default=21, help="CLI calls per median")
    parser.add_argument("--loop", type=int, default=50, help="submissions in the shell loop")
    options = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-scripting-"))
    lab = create_lab(root)
    node = lab.start_node(
        "node-1", data_dir=lab.first_data_dir, extra_args=["--simulate-gpus", "8xA100-80GB"]
    )
    env = lab.env
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    env["MURMUR_IDENTITY"] = str(lab.admin_identity)
    env["MURMUR_NODE"] = node.address
    murmur = [str(VENV_MURMUR)]
    submit = [*murmur, "job", "submit", "--runtime", "process", "--cpus", "0.01"]
    try:
        subprocess.run([*murmur, "status"], env=env, capture_output=True, check=True)
        print(f"host: {os.cpu_count()} CPUs; node-1 with 8 simulated GPUs")
        timed = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "murmur --help": [*murmur, "--help"],
            "murmur status": [*murmur, "status"],
            "murmur job submit": [*submit, "--", "true"],
        }
        for what, command in timed.items():
            print(f"{what:<20} p50 {_median_ms(command, env, options.runs):6.0f} ms")
        loop = f"for i in $(seq {options.loop}); do {' '.join(submit)} -- true >/dev/null; done"
        began = time.perf_counter()
        subprocess.run(["sh", "-c", loop], env=env, check=True, capture_output=True)
        rate = options.loop / (time.perf_counter() - began)
        print(f"shell loop of {options.loop} submits: {rate:.1f} jobs/s")
        accepted, drained = [], []
        for _ in range(options.arrays):
            began = time.perf_counter()
            made = subprocess.run(
                [*submit, "--array", "0-999", "--gpus", "1", "--", "true"],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            accepted.append(time.perf_counter() - began)
            began = time.perf_counter()
            subprocess.run(
                [*murmur, "job", "wait", made.stdout.strip()],
                env=env, capture_output=True, check=True,
            )  # fmt: skip
            drained.append(time.perf_counter() - began)
        print(
            f"1,000-task array: accepted p50 {statistics.median(accepted) * 1000:.0f} ms "
            f"(max {max(accepted) * 1000:.0f} ms, CLI wall); drained on 8 GPUs p50 "
            f"{statistics.median(drained):.1f} s ({1000 / statistics.median(drained):.0f} tasks/s)"
        )
    finally:
        lab.stop_all()


if __name__ == "__main__":
    main()
