"""A small, fixed lab for the snapshot tests and the docs' screenshots: six nodes in
every state, jobs in every state, datasets, services, a job's events and log."""

from __future__ import annotations

from murmur.v1 import types_pb2
from tests.tui.fake_cluster import EPOCH, FakeCluster, make_job, make_node, make_service

GIB = 1024**3


def demo_cluster() -> FakeCluster:
    nodes = [
        # Three samples of gpu-01 so its sparklines have a history.
        make_node("gpu-01", used=6, utilization=[20, 10, 5, 0], leader=True, runs_active=3,
                  measured_at=EPOCH - 4),
        make_node("gpu-01", used=6, utilization=[60, 40, 30, 0], leader=True, runs_active=3,
                  measured_at=EPOCH - 2),
        make_node("gpu-01", used=6, utilization=[97, 88, 71, 0], leader=True, runs_active=3,
                  measured_at=EPOCH),
        make_node("gpu-02", used=8, utilization=[100, 99], runs_active=1),
        make_node("gpu-03", gpus=4, model="NVIDIA H100-SXM5-80GB", used=1, utilization=[45, 0],
                  state=types_pb2.NODE_STATE_SUSPECT, runs_active=1),
        make_node("gpu-04", used=0, state=types_pb2.NODE_STATE_DRAINING),
        make_node("gpu-05", gpus=2, model="T4-16GB", state=types_pb2.NODE_STATE_DEAD),
        make_node("sim-01", used=2, simulated=True, runs_active=1),
    ]  # fmt: skip
    # What the routers carried in their last 30 s: llama through gpu-01's and gpu-02's,
    # embed through gpu-01's (counts of answers begun within [0, 1), [1, 2), [2, 4)... ms).
    for node, service, requests, errors, latency in (
        (nodes[2], "llama", 372, 2, [0, 0, 0, 0, 0, 12, 250, 108]),
        (nodes[2], "embed", 96, 0, [0, 0, 0, 40, 56]),
        (nodes[3], "llama", 120, 0, [0, 0, 0, 0, 0, 4, 90, 26]),
    ):
        node.traffic.add(
            service=service, window_seconds=30, requests=requests, errors=errors,
            latency_ms_log2=latency,
        )  # fmt: skip
    jobs = [
        make_job("j-1001", name="resnet50", node="gpu-01", gpu_indices=[0, 1, 2, 3], gpus=4,
                 age_seconds=3 * 3600 + 600),
        make_job("j-1002", name="bert-ft", user="bob", node="gpu-01", gpu_indices=[4, 5],
                 gpus=2, queue="short", age_seconds=1500),
        make_job("j-1003", name="llama-7b", user="carol", node="gpu-02",
                 gpu_indices=list(range(8)), gpus=8, age_seconds=2 * 86400),
        make_job("j-1004", name="sweep-17", user="bob", node="gpu-03", gpu_indices=[0],
                 age_seconds=300),
        make_job("j-1005", name="sim-test", user="dave", node="sim-01", gpu_indices=[0, 1],
                 gpus=2, age_seconds=45),
        make_job("j-1006", name="llama-13b", user="carol", gpus=8,
                 state=types_pb2.JOB_STATE_PENDING, queue_position=1,
                 reason="waiting: 8 GPUs asked, at most 4 free on one node", age_seconds=900),
        make_job("j-1007", name="sweep-18", user="bob", state=types_pb2.JOB_STATE_PENDING,
                 queue_position=2, reason="waiting: behind j-1006", age_seconds=120),
        make_job("j-0990", name="eval", node="gpu-02", gpu_indices=[0],
                 state=types_pb2.JOB_STATE_SUCCEEDED, age_seconds=5 * 86400),
        make_job("j-0991", name="oom-repro", user="bob", node="gpu-01", gpu_indices=[3],
                 state=types_pb2.JOB_STATE_FAILED, reason="exited with code 137",
                 age_seconds=4 * 86400),
        make_job("j-0992", name="typo", user="dave", state=types_pb2.JOB_STATE_CANCELLED,
                 reason="cancelled by dave", age_seconds=3 * 86400),
    ]  # fmt: skip
    datasets = [
        _dataset("imagenet", "gpu-01", "/data/imagenet", 148 * GIB, 1_281_167, "alice"),
        _dataset("c4-en", "gpu-02", "/data/c4/en", 806 * GIB, 1_024, "carol"),
        _dataset("mnist", "sim-01", "/srv/datasets/mnist", 55 * 1024**2, 4, "dave"),
    ]
    services = [
        make_service("llama", model="llama-3-8b", aliases=["llama"], user="carol",
                     replicas=[("j-2001", "gpu-01", 41017, True),
                               ("j-2002", "gpu-03", 40112, False)],
                     age_seconds=86400),
        make_service("embed", model="bge-large-en", replicas=[("j-2003", "sim-01", 40501, True)]),
        make_service("coder", model="qwen2.5-coder-7b", user="bob", gpus=2,
                     replicas=[("j-2004", "", 0, False)], age_seconds=300),
    ]  # fmt: skip
    events = [
        _event(1, "job.submitted", "j-1001", "submitted by alice", 3 * 3600 + 600),
        _event(2, "job.state", "j-1001", "starting on gpu-01 (GPUs 0,1,2,3)", 3 * 3600 + 598),
        _event(3, "job.state", "j-1001", "running on gpu-01 (pid 48213)", 3 * 3600 + 595),
    ]
    log_lines = [
        _log(
            index, f"epoch {index // 4 + 1} step {index % 4 * 250:>4} loss {2.5 / (index + 1):.4f}"
        )
        for index in range(24)
    ]
    log_lines.append(
        types_pb2.LogLine(
            run_id="j-1001-r1", stream=types_pb2.LOG_STREAM_STDERR, offset=10_000,
            text="warning: gradient overflow, skipping step", time=log_lines[-1].time,
        )
    )  # fmt: skip
    return FakeCluster(
        nodes=nodes, jobs=jobs, datasets=datasets, services=services, events=events,
        log_lines=log_lines,
        identity=types_pb2.Identity(name="alice", role=types_pb2.ROLE_ADMIN),
        attached_node="gpu-01", address="10.0.0.1:7070",
    )  # fmt: skip


def _dataset(
    name: str, node: str, path: str, size: int, files: int, added_by: str
) -> types_pb2.Dataset:
    dataset = types_pb2.Dataset(
        name=name, node=node, path=path, size_bytes=size, file_count=files, added_by=added_by
    )
    dataset.added_at.FromSeconds(EPOCH - 7 * 86400)
    return dataset


def _event(event_id: int, kind: str, subject: str, message: str, ago: int) -> types_pb2.Event:
    event = types_pb2.Event(id=event_id, kind=kind, subject=subject, message=message)
    event.time.FromSeconds(EPOCH - ago)
    return event


def _log(index: int, text: str) -> types_pb2.LogLine:
    line = types_pb2.LogLine(
        run_id="j-1001-r1", stream=types_pb2.LOG_STREAM_STDOUT, text=text, offset=(index + 1) * 64
    )
    line.time.FromSeconds(EPOCH - 60 + index * 2)
    return line
