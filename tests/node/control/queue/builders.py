"""A control state fed through a log: commands get the next index, as Raft would give."""

from __future__ import annotations

from murmur.node.control.queue import (
    ApplyResult,
    ClusterJob,
    Command,
    ControlState,
    ReportRun,
    encode,
)
from murmur.v1 import types_pb2

SECOND = 1_000_000


def spec(
    *,
    gpus: int = 0,
    share: bool = False,
    model: str = "",
    cpus: float = 1.0,
    memory_bytes: int = 1 << 30,
    retries: int = 0,
    no_requeue: bool = False,
    priority: int = 0,
    queue: str = "default",
    nodes: int = 1,
    image: str = "",
) -> types_pb2.JobSpec:
    return types_pb2.JobSpec(
        name="train",
        queue=queue,
        priority=priority,
        runtime=types_pb2.JOB_RUNTIME_DOCKER if image else types_pb2.JOB_RUNTIME_PROCESS,
        image=image,
        command=["python", "train.py"],
        env={"B": "2", "A": "1"},
        gpus=types_pb2.GpuRequest(count=gpus, share=share, model=model),
        cpus=cpus,
        memory_bytes=memory_bytes,
        retries=retries,
        no_requeue=no_requeue,
        nodes=nodes,
    )


class Log:
    """Applies commands at increasing indices of one term (``term`` may be changed)."""

    def __init__(self, state: ControlState | None = None, *, term: int = 1) -> None:
        self.state = state if state is not None else ControlState()
        self.term = term
        self.index = self.state.applied_index
        self.entries: list[tuple[int, int, bytes]] = []

    def apply(self, command: Command) -> ApplyResult:
        return self.apply_bytes(encode(command))

    def apply_bytes(self, data: bytes) -> ApplyResult:
        self.index += 1
        self.entries.append((self.term, self.index, data))
        return self.state.apply(self.term, self.index, data)


def end_run(log: Log, job: ClusterJob, state: str, exit_code: int, at_us: int) -> ApplyResult:
    """Reports the end of ``job``'s current run, as its node would."""
    assert job.assignment is not None
    run = job.assignment
    return log.apply(ReportRun(job.id, run.run_id, run.node, state, exit_code, "", at_us))
