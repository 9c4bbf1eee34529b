"""A node's run executor (RunExecutor) over the real process runtime, for tests of it
and of what calls it: start it, assign runs, wait for their transitions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.duration_pb2 import Duration

from murmur.node.agent.executor import RunAssignment, RunExecutor
from murmur.node.agent.runtimes.process import ProcessRuntime
from murmur.node.jobspec import states
from murmur.storage import RunRecord, Store
from murmur.v1 import types_pb2
from tests.support.accounts import harness_accounts

NODE = "node-1"


@dataclass
class Executor:
    jobs: RunExecutor
    changes: list[RunRecord] = field(default_factory=list)
    allocations: list[dict[int, str]] = field(default_factory=list)
    """The GPUs runs held each time the executor said its allocation changed."""

    def of(self, run_id: str) -> list[RunRecord]:
        return [record for record in self.changes if record.id == run_id]

    async def ended(self, run_id: str, within: float = 15.0) -> RunRecord:
        await until(lambda: any(not r.is_active for r in self.of(run_id)), within)
        return self.of(run_id)[-1]

    async def running(self, run_id: str) -> RunRecord:
        await until(lambda: any(r.state == states.RUNNING for r in self.of(run_id)))
        return self.of(run_id)[-1]


async def until(condition: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def executor(
    store: Store,
    runs_dir: Path,
    *,
    lease: float = 30.0,
    stop_runs: bool = True,
    job_path_roots: tuple[Path, ...] = (),
) -> AsyncIterator[Executor]:
    """A running RunExecutor over the process runtime and 8 simulated GPUs. On exit it
    stops what still runs (unless ``stop_runs`` is False: a simulated daemon crash)."""
    runtime = ProcessRuntime(runs_dir=runs_dir, node_name=NODE)
    changes: list[RunRecord] = []
    allocations: list[dict[int, str]] = []
    jobs: RunExecutor | None = None

    def allocation_changed() -> None:
        assert jobs is not None
        allocations.append(jobs.gpu_holders())

    jobs = RunExecutor(
        store=store,
        node_name=NODE,
        runs_dir=runs_dir,
        runtimes={"process": runtime},
        datasets=lambda: {},
        stop_grace_seconds=1.0,
        accounts=harness_accounts(),
        job_path_roots=job_path_roots,
        on_run_change=changes.append,
        on_allocation_change=allocation_changed,
        default_lease_seconds=lease,
        node_gpus=lambda: range(8),
    )
    task = asyncio.create_task(jobs.run())
    try:
        yield Executor(jobs, changes, allocations)
        if stop_runs:
            for record in await jobs.runs_report(term=jobs.highest_term, lease_seconds=lease):
                await jobs.stop_run(record.id, term=jobs.highest_term, reason="teardown")
            await until(lambda: jobs.active_run_count == 0)
    finally:
        task.cancel()
        await asyncio.wait([task])  # unlike `await task`, lets a cancellation of ours through
        runtime.close()
        if not task.cancelled():
            task.result()  # run() ended on its own: show why


def assignment(
    run_id: str,
    *command: str,
    gpus: tuple[int, ...] = (),
    share: bool = False,
    term: int = 1,
    sequence: int = 1,
    attempt: int = 1,
    lease: float = 30.0,
    time_limit: float | None = None,
) -> RunAssignment:
    spec = types_pb2.JobSpec(
        runtime=types_pb2.JOB_RUNTIME_PROCESS,
        command=list(command),
        queue="default",
        gpus=types_pb2.GpuRequest(count=len(gpus), share=share),
    )
    if time_limit is not None:
        spec.time_limit.CopyFrom(Duration(nanos=int(time_limit * 1e9)))
    return RunAssignment(
        job_id=run_id.split(".")[0],
        run_id=run_id,
        attempt=attempt,
        spec=spec,
        gpu_indices=gpus,
        term=term,
        sequence=sequence,
        user="ada",
        lease_seconds=lease,
    )
