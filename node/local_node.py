"""This node's view of itself: static facts plus live load, as a NodeInfo.

The static part (name, addresses, GPU inventory, runtimes) is fixed at start;
the live part (GPU telemetry, host CPU and memory) is refreshed by
:meth:`LocalNode.run_telemetry`, which does the blocking NVML and /proc reads
in a worker thread so the event loop never waits on them. Which GPUs runs hold is
not a reading but a fact the cluster schedules on and shows: the run executor says
when it changes (its ``on_allocation_change``), and :meth:`LocalNode.allocation_changed`
publishes it at once, not at the next sample. Nothing polls for it: an idle node wakes
only for its samples.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from murmur.node.agent.convert import gpu_inventory_message, node_load_message, timestamp
from murmur.node.agent.gpus import GpuInventory, GpuProbe, GpuTelemetry
from murmur.node.agent.host_load import HostLoad, HostLoadSampler
from murmur.node.broadcast import Broadcaster
from murmur.node.config import HostPort
from murmur.v1 import types_pb2

_log = logging.getLogger("murmur.node")

VERSION = "0.1.0"


class ElectionFacts(Protocol):
    """This node's Raft view as it is told (a ``ConsensusStatus`` has it): declared
    here so that this module, which the control plane reads, does not import it."""

    @property
    def name(self) -> str: ...

    @property
    def term(self) -> int: ...

    @property
    def leader(self) -> str | None: ...

    @property
    def voters(self) -> frozenset[str]: ...


@dataclass
class LocalNode:
    """Static facts and the latest measured load of the node this daemon runs."""

    name: str
    address: HostPort
    join_address: HostPort | None
    holds_ca: bool
    gpu_probe: GpuProbe
    labels: dict[str, str]
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    runtimes: tuple[str, ...] = ("process",)
    runtime_notes: str = ""
    updates: Broadcaster[types_pb2.NodeInfo] = field(default_factory=Broadcaster)
    gpu_holders: Callable[[], Mapping[int, str]] = dict
    """GPU index → job id of the run holding it (the job manager's allocation)."""
    active_runs: Callable[[], int] = lambda: 0
    datasets: Callable[[], list[types_pb2.Dataset]] = list
    """This node's dataset catalog, gossiped with the rest of its facts."""
    endpoints: Callable[[], list[types_pb2.ServiceEndpoint]] = list
    """The service replicas running here, ready or not (node/agent/replicas.py)."""
    traffic: Callable[[], list[types_pb2.ServiceTraffic]] = list
    """What this node's router sent each service lately (node/router/traffic.py), for
    ``murmur top``'s requests/s and latency."""
    election: Callable[[], ElectionFacts | None] = lambda: None
    """This node's Raft view (node/control/consensus; ``None`` without one): its voter flag,
    whether it leads and its term are gossiped so that any node can tell clients who
    leads, and the cluster view takes every node's role from it."""
    draining: bool = False
    """An admin drained this node: it starts no new job (``murmur node drain``)."""
    revocations_revision: int = 0
    """The newest certificate revocation this node enforces (node/deny_list.py),
    gossiped so that a node that knows an older one pulls the list (with the CA
    rotation steps: the trust revision, node/control/revocation_sync.py)."""
    ca_changes_revision: int = 0
    """The newest CA rotation step this node knows (node/trust_anchors.py)."""
    ca_fingerprint: str = ""
    """The lab CA that issued this node's certificate: a CA rotation can finish once
    every node's is the new CA's (node/trust.py)."""
    version: str = VERSION
    """The murmur version this node reports (a simulated older one says so in it)."""
    protocol_level: int = 0
    """The control protocol level it speaks (node/control/queue/protocol.py), gossiped
    so that a request needing more is refused while this node runs; 0: none said."""
    upgrade_needed: Callable[[], str] = lambda: ""
    """Why this node stopped applying the control log and must be upgraded, or ""
    (the consensus runner's ``halted``)."""
    _inventory: GpuInventory | None = None
    _telemetry: list[GpuTelemetry] = field(default_factory=list)
    _host_load: HostLoad | None = None
    _measured_at: datetime | None = None
    _sampler: HostLoadSampler = field(default_factory=HostLoadSampler)
    _allocation: tuple[int, int] | None = None
    """(free GPUs, active runs) as last published by this class."""

    @property
    def inventory(self) -> GpuInventory:
        if self._inventory is None:
            self._inventory = self.gpu_probe.inventory()
        return self._inventory

    def gpus_free(self) -> int:
        held = self.gpu_holders()
        return sum(1 for device in self.inventory.devices if device.index not in held)

    @property
    def memory_total_bytes(self) -> int:
        return self._host_load.memory_total_bytes if self._host_load else 0

    def gpu_resources(self) -> tuple[tuple[int, str, int], ...]:
        return tuple((d.index, d.model, d.memory_total_bytes) for d in self.inventory.devices)

    def allocation(self) -> tuple[int, int]:
        """(free GPUs, active runs) now."""
        return self.gpus_free(), self.active_runs()

    def describe(self) -> types_pb2.NodeInfo:
        election = self.election()
        voter = election is not None and self.name in election.voters
        leader = election is not None and election.leader == self.name
        term = election.term if election is not None else 0
        return types_pb2.NodeInfo(
            name=self.name,
            address=str(self.address),
            join_address=str(self.join_address) if self.join_address else "",
            state=types_pb2.NODE_STATE_DRAINING if self.draining else types_pb2.NODE_STATE_ALIVE,
            labels=self.labels,
            voter=voter,
            leader=leader,
            term=term,
            gpus=gpu_inventory_message(self.inventory),
            load=node_load_message(
                gpus_free=self.gpus_free(),
                telemetry=self._telemetry,
                host=self._host_load,
                measured_at=self._measured_at,
                runs_active=self.active_runs(),
            ),
            runtimes=list(self.runtimes),
            runtime_notes=self.runtime_notes,
            version=self.version,
            protocol_level=self.protocol_level,
            upgrade_needed=self.upgrade_needed(),
            started_at=timestamp(self.started_at),
            holds_ca=self.holds_ca,
            datasets=self.datasets(),
            revocations_revision=self.revocations_revision,
            ca_fingerprint=self.ca_fingerprint,
            ca_changes_revision=self.ca_changes_revision,
            endpoints=self.endpoints(),
            traffic=self.traffic(),
        )

    def allocation_changed(self) -> bool:
        """Publish this node's NodeInfo if runs took or freed GPUs (or started or
        ended) since it was last published; returns whether it did. Called by the
        run executor whenever a run takes or frees GPUs, starts or ends."""
        if self.allocation() == self._allocation:
            return False
        self._publish()
        return True

    async def sample_once(self) -> None:
        """Reads GPU telemetry and host load (in a thread) and publishes the result."""
        telemetry, host = await asyncio.to_thread(self._read_load)
        self._telemetry, self._host_load = telemetry, host
        self._measured_at = datetime.now(UTC)
        self._publish()

    def publish(self) -> None:
        """Publish this node's NodeInfo now (a replica became ready, say)."""
        self._publish()

    def _publish(self) -> None:
        self._allocation = self.allocation()
        self.updates.publish(self.describe())

    def _read_load(self) -> tuple[list[GpuTelemetry], HostLoad]:
        return self.gpu_probe.telemetry(), self._sampler.sample()

    async def run_telemetry(self, interval_seconds: float) -> None:
        """Samples load forever (a failed sample is logged and the loop goes on)."""
        while True:
            try:
                await self.sample_once()
            except Exception:
                _log.exception("telemetry sample failed")
            await asyncio.sleep(interval_seconds)
