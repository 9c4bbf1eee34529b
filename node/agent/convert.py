"""Conversions from the daemon's domain types to the wire contract's messages."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from murmur.certs import CertificateIdentity, Role
from murmur.node.agent.gpus import GpuFacts, GpuInventory, GpuSource, GpuTelemetry
from murmur.node.agent.host_load import HostLoad
from murmur.storage import AuditRecord, DatasetRecord, EventRecord
from murmur.v1 import types_pb2

ROLE_TO_PROTO: dict[Role, types_pb2.Role.ValueType] = {
    Role.VIEWER: types_pb2.ROLE_VIEWER,
    Role.MEMBER: types_pb2.ROLE_MEMBER,
    Role.ADMIN: types_pb2.ROLE_ADMIN,
    Role.NODE: types_pb2.ROLE_NODE,
}
ROLE_FROM_PROTO = {value: key for key, value in ROLE_TO_PROTO.items()}

_GPU_SOURCE_TO_PROTO: dict[GpuSource, types_pb2.GpuSource.ValueType] = {
    GpuSource.NVML: types_pb2.GPU_SOURCE_NVML,
    GpuSource.SIMULATED: types_pb2.GPU_SOURCE_SIMULATED,
    GpuSource.NONE: types_pb2.GPU_SOURCE_NONE,
}


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def identity_message(identity: CertificateIdentity, ca_fingerprint: str) -> types_pb2.Identity:
    return types_pb2.Identity(
        name=identity.name,
        role=ROLE_TO_PROTO[identity.role],
        serial=identity.serial,
        not_before=timestamp(identity.not_before),
        not_after=timestamp(identity.not_after),
        ca_fingerprint=ca_fingerprint,
    )


def gpu_device_message(facts: GpuFacts) -> types_pb2.GpuDevice:
    message = types_pb2.GpuDevice(
        index=facts.index,
        uuid=facts.uuid,
        model=facts.model,
        memory_total_bytes=facts.memory_total_bytes,
        simulated=facts.simulated,
        driver_version=facts.driver_version,
    )
    if facts.compute_capability is not None:
        message.compute_major, message.compute_minor = facts.compute_capability
    if facts.nvlink_group is not None:
        message.nvlink_group = facts.nvlink_group
    if facts.pcie_group is not None:
        message.pcie_group = facts.pcie_group
    return message


def gpu_inventory_message(inventory: GpuInventory) -> types_pb2.GpuInventory:
    return types_pb2.GpuInventory(
        source=_GPU_SOURCE_TO_PROTO[inventory.source],
        devices=[gpu_device_message(device) for device in inventory.devices],
        reason=inventory.reason,
    )


def gpu_stats_message(telemetry: GpuTelemetry) -> types_pb2.GpuStats:
    """Telemetry NVML could not report stays unset (absent), never 0."""
    message = types_pb2.GpuStats(index=telemetry.index)
    if telemetry.utilization_percent is not None:
        message.utilization_percent = telemetry.utilization_percent
    if telemetry.memory_used_bytes is not None:
        message.memory_used_bytes = telemetry.memory_used_bytes
    if telemetry.temperature_celsius is not None:
        message.temperature_celsius = telemetry.temperature_celsius
    if telemetry.power_milliwatts is not None:
        message.power_milliwatts = telemetry.power_milliwatts
    return message


def node_load_message(
    *,
    gpus_free: int,
    telemetry: list[GpuTelemetry],
    host: HostLoad | None,
    measured_at: datetime | None,
    runs_active: int = 0,
) -> types_pb2.NodeLoad:
    message = types_pb2.NodeLoad(
        gpus_free=gpus_free,
        gpu_stats=[gpu_stats_message(t) for t in telemetry],
        runs_active=runs_active,
    )
    if host is not None:
        message.cpu_count = host.cpu_count
        message.memory_total_bytes = host.memory_total_bytes
        if host.cpu_percent is not None:
            message.cpu_percent = host.cpu_percent
        if host.memory_used_bytes is not None:
            message.memory_used_bytes = host.memory_used_bytes
    if measured_at is not None:
        message.measured_at.CopyFrom(timestamp(measured_at))
    return message


def event_message(record: EventRecord, node_name: str) -> types_pb2.Event:
    return types_pb2.Event(
        id=record.id,
        time=timestamp(record.time),
        kind=record.kind,
        subject=record.subject,
        message=record.message,
        node=node_name,
    )


def audit_message(record: AuditRecord, node_name: str) -> types_pb2.AuditRecord:
    try:
        role = ROLE_TO_PROTO[Role(record.role)]
    except ValueError:  # a role name from a newer murmur
        role = types_pb2.ROLE_UNSPECIFIED
    return types_pb2.AuditRecord(
        id=record.id,
        time=timestamp(record.time),
        user=record.user,
        role=role,
        action=record.action,
        target=record.target,
        result=record.result,
        detail=record.detail,
        node=node_name,
    )


def dataset_message(record: DatasetRecord, node_name: str) -> types_pb2.Dataset:
    return types_pb2.Dataset(
        name=record.name,
        node=node_name,
        path=str(record.path),
        size_bytes=record.size_bytes,
        file_count=record.file_count,
        manifest_sha256=record.manifest_sha256,
        added_at=timestamp(record.added_at),
        added_by=record.added_by,
    )
