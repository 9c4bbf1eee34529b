"""What a node tells the cluster about itself through gossip: its NodeInfo, trimmed.

The gossip layer carries one opaque, versioned blob per member
(:attr:`murmur.node.gossip.Member.meta`); ours is a serialized ``murmur.v1.NodeInfo``:
name, addresses, labels, voter flag, GPU inventory, load, runtimes and the
dataset catalog. Every member keeps every other member's blob, and each change is
retransmitted several times, so the blob is kept small:

- per-GPU telemetry keeps what a cluster view shows (utilization, memory used);
  temperature and power stay on the node, where ``Describe`` serves them;
- ``incarnation`` is left out: gossip itself carries the member's incarnation;
- the daemon passes its NodeInfo through a :class:`LoadDamper` first, so load
  readings that barely moved do not make a new version (and a cluster-wide
  retransmission) at every sample;
- the blob is at most :data:`MAX_META_BYTES`. Over it, parts are dropped in this
  order until it fits (:data:`TRIM_ORDER`): the router's per-service traffic,
  per-GPU telemetry, runtime notes,
  dataset details (path, manifest hash, who added it and when; the name, size and
  file count stay), then the dataset list itself. A node whose remaining facts are
  still over (thousands of labels) gets :class:`NodeMetaTooLargeError`.

Serialization is deterministic (map fields sorted), so an unchanged NodeInfo gives
identical bytes and the runner publishes a new version only on a real change.
Receivers treat a blob as untrusted input: :func:`decode_meta` returns ``None`` for
anything that is not a NodeInfo with a name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from google.protobuf.message import DecodeError

from murmur.node.membership.errors import NodeMetaTooLargeError
from murmur.v1 import types_pb2

_log = logging.getLogger("murmur.membership")

MAX_META_BYTES = 8 * 1024
"""Largest metadata blob a node gossips. The gossip config's piggyback budget
(``max_piggyback_bytes``) must hold one Alive carrying a blob this large, or the
blob would never leave the broadcast queue (see :mod:`murmur.node.membership.runner`)."""


def _drop_traffic(info: types_pb2.NodeInfo) -> None:
    info.ClearField("traffic")


def _drop_gpu_telemetry(info: types_pb2.NodeInfo) -> None:
    info.load.ClearField("gpu_stats")


def _drop_runtime_notes(info: types_pb2.NodeInfo) -> None:
    info.ClearField("runtime_notes")


def _drop_dataset_details(info: types_pb2.NodeInfo) -> None:
    for dataset in info.datasets:
        for field in ("node", "path", "manifest_sha256", "added_at", "added_by"):
            dataset.ClearField(field)


def _drop_datasets(info: types_pb2.NodeInfo) -> None:
    info.ClearField("datasets")


TRIM_ORDER: tuple[tuple[str, Callable[[types_pb2.NodeInfo], None]], ...] = (
    ("service traffic", _drop_traffic),
    ("gpu telemetry", _drop_gpu_telemetry),
    ("runtime notes", _drop_runtime_notes),
    ("dataset details", _drop_dataset_details),
    ("datasets", _drop_datasets),
)
"""What goes, in order, when a blob is over the limit: live telemetry first (the
router's traffic and the GPUs': the next refresh replaces them anyway), the node's
catalog last."""

UTILIZATION_STEP_PERCENT = 5.0
"""A CPU or GPU utilization is re-gossiped once it moved this many points."""

MEMORY_STEP_FRACTION = 1 / 64
"""Host memory use is re-gossiped once it moved by this much of the total."""

GPU_MEMORY_STEP_BYTES = 256 * 2**20
"""GPU memory use is re-gossiped once it moved by this much."""


def _hold(new: float, last: float, step: float) -> bool:
    return abs(new - last) < step


class LoadDamper:
    """Holds back load changes too small to be worth telling the whole cluster.

    Every changed blob is retransmitted to the cluster; an idle node whose CPU
    reading wobbles between 2 % and 3 % would otherwise publish a new version at
    every sample and keep every member gossiping. A reading is replaced only when
    it moved a whole step (:data:`UTILIZATION_STEP_PERCENT`,
    :data:`MEMORY_STEP_FRACTION`, :data:`GPU_MEMORY_STEP_BYTES`) from the value last
    gossiped, so what peers see is never off by more than a step. Counts (free
    GPUs, active runs) pass unchanged, and the sample time is dropped.
    """

    def __init__(self) -> None:
        self._last: types_pb2.NodeLoad | None = None

    def apply(self, info: types_pb2.NodeInfo) -> types_pb2.NodeInfo:
        """A copy of ``info`` whose load holds the last gossiped readings where
        the new ones differ by less than a step."""
        damped = types_pb2.NodeInfo()
        damped.CopyFrom(info)
        load = damped.load
        load.ClearField("measured_at")
        last = self._last
        if last is not None:
            if (
                load.HasField("cpu_percent")
                and last.HasField("cpu_percent")
                and _hold(load.cpu_percent, last.cpu_percent, UTILIZATION_STEP_PERCENT)
            ):
                load.cpu_percent = last.cpu_percent
            memory_step = load.memory_total_bytes * MEMORY_STEP_FRACTION
            if (
                load.HasField("memory_used_bytes")
                and last.HasField("memory_used_bytes")
                and _hold(load.memory_used_bytes, last.memory_used_bytes, memory_step)
            ):
                load.memory_used_bytes = last.memory_used_bytes
            previous = {stats.index: stats for stats in last.gpu_stats}
            for stats in load.gpu_stats:
                before = previous.get(stats.index)
                if before is None:
                    continue
                if (
                    stats.HasField("utilization_percent")
                    and before.HasField("utilization_percent")
                    and _hold(
                        stats.utilization_percent,
                        before.utilization_percent,
                        UTILIZATION_STEP_PERCENT,
                    )
                ):
                    stats.utilization_percent = before.utilization_percent
                if (
                    stats.HasField("memory_used_bytes")
                    and before.HasField("memory_used_bytes")
                    and _hold(
                        stats.memory_used_bytes, before.memory_used_bytes, GPU_MEMORY_STEP_BYTES
                    )
                ):
                    stats.memory_used_bytes = before.memory_used_bytes
        self._last = types_pb2.NodeLoad()
        self._last.CopyFrom(load)
        return damped


_last_trim_note: dict[str, tuple[str, ...]] = {}
"""Per node name, the parts last dropped: a trim is logged when it changes, not on
every refresh."""


def encode_meta(info: types_pb2.NodeInfo, *, limit: int = MAX_META_BYTES) -> bytes:
    """The gossip blob for ``info`` (``info`` itself is not modified).

    Raises:
        NodeMetaTooLargeError: even with everything in :data:`TRIM_ORDER` dropped,
            the blob is over ``limit``.
    """
    trimmed = types_pb2.NodeInfo()
    trimmed.CopyFrom(info)
    trimmed.ClearField("incarnation")
    for stats in trimmed.load.gpu_stats:
        stats.ClearField("temperature_celsius")
        stats.ClearField("power_milliwatts")
    blob = trimmed.SerializeToString(deterministic=True)
    dropped: list[str] = []
    for part, drop in TRIM_ORDER:
        if len(blob) <= limit:
            break
        drop(trimmed)
        dropped.append(part)
        blob = trimmed.SerializeToString(deterministic=True)
    if len(blob) > limit:
        raise NodeMetaTooLargeError(
            f"node {info.name!r}: its gossip metadata is {len(blob)} bytes even without "
            f"telemetry and datasets, over the {limit}-byte limit; use fewer or shorter labels"
        )
    _note_trim(info.name, tuple(dropped), limit)
    return blob


def _note_trim(name: str, dropped: tuple[str, ...], limit: int) -> None:
    if _last_trim_note.get(name, ()) == dropped:
        return
    _last_trim_note[name] = dropped
    if dropped:
        _log.warning(
            "gossip metadata over its size limit; dropped %s",
            ", ".join(dropped),
            extra={"event": "membership.meta_trimmed", "node": name, "limit": limit},
        )


def decode_meta(blob: bytes) -> types_pb2.NodeInfo | None:
    """The NodeInfo in a member's blob; ``None`` (logged) when the blob is empty,
    does not parse, or names no node."""
    if not blob:
        return None
    try:
        info = types_pb2.NodeInfo.FromString(blob)
    except DecodeError as exc:
        _log.warning(
            "dropped gossip metadata that is not a NodeInfo: %s",
            exc,
            extra={"event": "membership.meta_invalid", "size": len(blob)},
        )
        return None
    if not info.name:
        _log.warning(
            "dropped gossip metadata without a node name",
            extra={"event": "membership.meta_invalid", "size": len(blob)},
        )
        return None
    return info
