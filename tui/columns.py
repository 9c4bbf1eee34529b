"""The columns and filter fields of the tables: nodes, jobs, datasets, services and
a service's replicas.

Each column reads one thing off a proto message; sort keys are raw values (numbers
sort as numbers), cells are formatted at paint time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rich.text import Text

from murmur.tui.filters import FilterSpec
from murmur.tui.format import (
    JOB_STATE_STYLES,
    MISSING,
    NODE_STATE_STYLES,
    age,
    gpu_bar,
    human_bytes,
    job_state_name,
    node_state_name,
    percent,
)
from murmur.tui.node_summary import summarize
from murmur.tui.table_model import Column
from murmur.tui.traffic import NO_TRAFFIC, ServiceRates, latency_text, rate_text
from murmur.v1 import types_pb2

# ------------------------------------------------------------------------ nodes


def _node_name(node: types_pb2.NodeInfo, now: float) -> Text:
    mark = Text("★ ", style="bold yellow") if node.leader else Text("  ")
    return mark + Text(node.name)


def _node_state(node: types_pb2.NodeInfo, now: float) -> Text:
    return Text(node_state_name(node.state), style=NODE_STATE_STYLES.get(node.state, ""))


def _node_models(node: types_pb2.NodeInfo, now: float) -> Text:
    summary = summarize(node)
    text = Text(summary.models)
    if summary.simulated:
        text.append(" (simulated)", style="italic magenta")
    return text


def _node_memory(node: types_pb2.NodeInfo, now: float) -> str:
    summary = summarize(node)
    if summary.memory_total == 0:
        return MISSING
    return f"{human_bytes(summary.memory_used)} / {human_bytes(summary.memory_total)}"


def _or_minus_one(value: float | None) -> float:
    """Unknown sorts below every known value, including 0."""
    return -1.0 if value is None else float(value)


def _node_temperature(node: types_pb2.NodeInfo) -> int | None:
    return summarize(node).temperature_max


NODE_COLUMNS: list[Column[types_pb2.NodeInfo]] = [
    Column("NAME", 14, lambda n: n.name, _node_name),
    Column("STATE", 9, lambda n: n.state, _node_state),
    Column(
        "GPUS USED",
        14,
        lambda n: summarize(n).gpus_used,
        lambda n, now: gpu_bar(summarize(n).gpus_used, summarize(n).gpus_total),
    ),
    Column("MODEL", 25, lambda n: summarize(n).models, _node_models),
    Column(
        "UTIL",
        5,
        lambda n: _or_minus_one(summarize(n).utilization),
        lambda n, now: percent(summarize(n).utilization),
    ),
    Column("GPU MEMORY", 18, lambda n: _or_minus_one(summarize(n).memory_used), _node_memory),
    Column(
        "TEMP",
        5,
        lambda n: _or_minus_one(_node_temperature(n)),
        lambda n, now: MISSING if (t := _node_temperature(n)) is None else f"{t}°C",
    ),
    Column("JOBS", 4, lambda n: n.load.runs_active, lambda n, now: str(n.load.runs_active)),
    Column(
        "CPU",
        5,
        lambda n: n.load.cpu_percent,
        lambda n, now: percent(n.load.cpu_percent if n.load.HasField("cpu_percent") else None),
    ),
    Column("ADDRESS", 19, lambda n: n.address, lambda n, now: n.address),
]


def _node_fields(node: types_pb2.NodeInfo) -> Mapping[str, str]:
    return {"state": node_state_name(node.state), "node": node.name, "name": node.name}


NODE_FILTER: FilterSpec[types_pb2.NodeInfo] = FilterSpec(
    fields=_node_fields,
    text=lambda n: f"{n.name} {node_state_name(n.state)} {summarize(n).models} {n.address}",
    names=frozenset({"state", "node", "name"}),
)

# ------------------------------------------------------------------------- jobs


def job_node(job: types_pb2.Job) -> str:
    """Where the job's latest run is (or was): its node, or a gang's nodes; empty
    before its first run."""
    if not job.runs:
        return ""
    latest = job.runs[-1].id
    ranks = sorted((run for run in job.runs if run.id == latest), key=lambda run: run.node_rank)
    return ",".join(run.node for run in ranks)


def job_gpus(job: types_pb2.Job) -> str:
    return gpu_request(job.spec.gpus)


def gpu_request(request: types_pb2.GpuRequest) -> str:
    """`4xA100 shared`: how many GPUs are asked, of which model, whether shared."""
    text = str(request.count)
    if request.model:
        text += f"x{request.model}"
    if request.share:
        text += " shared"
    return text


def job_reason(job: types_pb2.Job) -> str:
    """The why-pending line: the node's reason plus the queue position."""
    reason = job.reason
    if job.state == types_pb2.JOB_STATE_PENDING and job.queue_position:
        where = f"#{job.queue_position} in {job.spec.queue or 'default'}"
        reason = f"{reason}; {where}" if reason else where
    return reason


def _job_state(job: types_pb2.Job, now: float) -> Text:
    return Text(job_state_name(job.state), style=JOB_STATE_STYLES.get(job.state, ""))


def _submitted(job: types_pb2.Job) -> float:
    return job.submitted_at.seconds + job.submitted_at.nanos / 1e9


JOB_COLUMNS: list[Column[types_pb2.Job]] = [
    Column("ID", 13, lambda j: j.id, lambda j, now: j.id),
    Column("NAME", 16, lambda j: j.spec.name, lambda j, now: j.spec.name),
    Column("USER", 10, lambda j: j.user, lambda j, now: j.user),
    Column("QUEUE", 9, lambda j: j.spec.queue, lambda j, now: j.spec.queue or "default"),
    Column("STATE", 10, lambda j: j.state, _job_state),
    Column("GPUS", 6, lambda j: j.spec.gpus.count, lambda j, now: job_gpus(j)),
    Column("NODE", 12, job_node, lambda j, now: job_node(j)),
    Column("AGE", 6, lambda j: -_submitted(j), lambda j, now: age(now - _submitted(j))),
    Column("REASON", 30, job_reason, lambda j, now: job_reason(j)),
]
JOB_DEFAULT_SORT = 7
"""Newest first: the AGE column sorts by submission time, latest on top."""


def _job_fields(job: types_pb2.Job) -> Mapping[str, str]:
    return {
        "user": job.user,
        "state": job_state_name(job.state),
        "queue": job.spec.queue or "default",
        "node": job_node(job),
        "id": job.id,
        "name": job.spec.name,
    }


JOB_FILTER: FilterSpec[types_pb2.Job] = FilterSpec(
    fields=_job_fields,
    text=lambda j: " ".join(
        (j.id, j.spec.name, j.user, job_state_name(j.state), job_node(j), job_reason(j))
    ),
    names=frozenset({"user", "state", "queue", "node", "id", "name"}),
)

# --------------------------------------------------------------------- datasets


PATH_WIDTH = 40


def _path_tail(path: str) -> str:
    """A long path keeps its end, where the dataset's own directory is named."""
    return path if len(path) <= PATH_WIDTH else "…" + path[-(PATH_WIDTH - 1) :]


def _added(dataset: types_pb2.Dataset) -> float:
    return float(dataset.added_at.seconds)


DATASET_COLUMNS: list[Column[types_pb2.Dataset]] = [
    Column("NAME", 20, lambda d: d.name, lambda d, now: d.name),
    Column("NODE", 14, lambda d: d.node, lambda d, now: d.node),
    Column("SIZE", 10, lambda d: d.size_bytes, lambda d, now: human_bytes(d.size_bytes)),
    Column("FILES", 8, lambda d: d.file_count, lambda d, now: str(d.file_count)),
    Column("PATH", PATH_WIDTH, lambda d: d.path, lambda d, now: _path_tail(d.path)),
    Column("ADDED BY", 10, lambda d: d.added_by, lambda d, now: d.added_by),
    Column("AGE", 6, lambda d: -_added(d), lambda d, now: age(now - _added(d))),
]

DATASET_FILTER: FilterSpec[types_pb2.Dataset] = FilterSpec(
    fields=lambda d: {"node": d.node, "name": d.name},
    text=lambda d: f"{d.name} {d.node} {d.path} {d.added_by}",
    names=frozenset({"node", "name"}),
)

# --------------------------------------------------------------------- services


@dataclass(frozen=True)
class ServiceRow:
    """A row of the services table: the service as ListServices told it, and its
    traffic as every node's router gossips it (tui/traffic.py)."""

    service: types_pb2.Service
    rates: ServiceRates = NO_TRAFFIC


def service_ready(service: types_pb2.Service) -> str:
    """`1/2`: replicas ready out of the replicas the service keeps."""
    return f"{service.ready}/{service.spec.replicas}"


def _service_ready(row: ServiceRow, now: float) -> Text:
    service = row.service
    wanted = service.spec.replicas
    style = "green" if service.ready >= wanted else "yellow" if service.ready else "red"
    return Text(service_ready(service), style=style if wanted else "dim")


def _created(row: ServiceRow) -> float:
    return float(row.service.created_at.seconds)


def _requests(row: ServiceRow, now: float) -> Text:
    rate = row.rates.requests
    return Text(rate_text(rate), style="" if rate else "dim")


def _errors(row: ServiceRow, now: float) -> Text:
    rate = row.rates.errors
    return Text(rate_text(rate), style="bold red" if rate else "dim")


def _p50(row: ServiceRow, now: float) -> str:
    return latency_text(row.rates.p50_seconds)


def _p99(row: ServiceRow, now: float) -> str:
    return latency_text(row.rates.p99_seconds)


def runtime_name(runtime: types_pb2.JobRuntime.ValueType) -> str:
    return types_pb2.JobRuntime.Name(runtime).removeprefix("JOB_RUNTIME_").lower()


SERVICE_COLUMNS: list[Column[ServiceRow]] = [
    Column("NAME", 16, lambda r: r.service.spec.name, lambda r, now: r.service.spec.name),
    Column("MODEL", 24, lambda r: r.service.spec.model, lambda r, now: r.service.spec.model),
    Column("READY", 7, lambda r: (r.service.ready, r.service.spec.replicas), _service_ready),
    Column("REQ/S", 7, lambda r: r.rates.requests, _requests),
    Column("ERR/S", 6, lambda r: r.rates.errors, _errors),
    Column("P50", 8, lambda r: _or_minus_one(r.rates.p50_seconds), _p50),
    Column("P99", 8, lambda r: _or_minus_one(r.rates.p99_seconds), _p99),
    Column("USER", 10, lambda r: r.service.user, lambda r, now: r.service.user),
    Column(
        "RUNTIME",
        8,
        lambda r: runtime_name(r.service.spec.template.runtime),
        lambda r, now: runtime_name(r.service.spec.template.runtime),
    ),
    Column(
        "GPUS",
        6,
        lambda r: r.service.spec.template.gpus.count,
        lambda r, now: gpu_request(r.service.spec.template.gpus),
    ),
    Column("AGE", 6, lambda r: -_created(r), lambda r, now: age(now - _created(r))),
]


def _service_fields(row: ServiceRow) -> Mapping[str, str]:
    service = row.service
    return {"user": service.user, "name": service.spec.name, "model": service.spec.model}


def _service_text(row: ServiceRow) -> str:
    spec = row.service.spec
    return " ".join((spec.name, spec.model, *spec.aliases, row.service.user))


SERVICE_FILTER: FilterSpec[ServiceRow] = FilterSpec(
    fields=_service_fields,
    text=_service_text,
    names=frozenset({"user", "name", "model"}),
)


def _replica_state(replica: types_pb2.ServiceReplica, now: float) -> Text:
    return Text(job_state_name(replica.state), style=JOB_STATE_STYLES.get(replica.state, ""))


def _replica_ready(replica: types_pb2.ServiceReplica, now: float) -> Text:
    return Text("yes", style="green") if replica.ready else Text("no", style="yellow")


REPLICA_COLUMNS: list[Column[types_pb2.ServiceReplica]] = [
    Column("SLOT", 6, lambda r: r.slot, lambda r, now: str(r.slot)),
    Column("JOB", 13, lambda r: r.job_id, lambda r, now: r.job_id or MISSING),
    Column("STATE", 10, lambda r: r.state, _replica_state),
    Column("NODE", 12, lambda r: r.node, lambda r, now: r.node),
    Column("PORT", 6, lambda r: r.port, lambda r, now: str(r.port) if r.port else MISSING),
    Column("READY", 5, lambda r: r.ready, _replica_ready),
    Column("REASON", 30, lambda r: r.reason, lambda r, now: r.reason),
]
