"""Test helper: a stand-in for the daemon in the kill -9 scenario.

``python tests/node/agent/runtimes/start_runs_then_hang.py RUNS_DIR`` starts three runs
with a ProcessRuntime, prints their handles and its fork server's pid as one JSON
line (``{"handles": {...}, "fork_server_pid": N}``), then waits to be killed. The
test SIGKILLs it and checks that a fresh runtime finds the runs.

    sleeper   prints "before", then "after" 1.5 s later, then sleeps 30 s
    short     exits 5 after 1 s
    orphan    sleeps 30 s; the test does not tell the fresh runtime about it
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path

from murmur.node.agent.runtimes.base import LaunchSpec, RunFiles
from murmur.node.agent.runtimes.process import ProcessRuntime

RUNS = {
    "sleeper": ("sh", "-c", "echo before; sleep 1.5; echo after; sleep 30"),
    "short": ("sh", "-c", "sleep 1; exit 5"),
    "orphan": ("sleep", "30"),
}


async def start_runs_then_hang(runs_dir: Path) -> None:
    runtime = ProcessRuntime(runs_dir=runs_dir, node_name="node-1")
    handles = {}
    for run_id, argv in RUNS.items():
        spec = LaunchSpec(
            run_id=run_id,
            job_id=f"job-{run_id}",
            node_name="node-1",
            argv=argv,
            shell=False,
            env={},
            workdir=None,
            gpu_indices=(),
            cpus=None,
            memory_bytes=None,
            datasets=(),
            files=RunFiles(runs_dir / run_id),
        )
        handles[run_id] = dataclasses.asdict(await runtime.start(spec))
    started = {"handles": handles, "fork_server_pid": runtime.fork_server_pid}
    print(json.dumps(started), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(start_runs_then_hang(Path(sys.argv[1])))
