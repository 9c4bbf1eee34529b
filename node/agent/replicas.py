"""`ReplicaEndpoints`: the service replicas this node runs, their ports and whether
they are ready.

A service's replica (a job whose spec carries ``replica_of``) gets a port of this
node's, free when chosen, in ``PORT``: it listens there (on every interface: routers
on other nodes reach it at this node's address). The port is kept in the run's
directory, so a replica adopted after a daemon restart keeps it. While the replica
runs, an HTTP GET of its readiness path on that port, every period, says whether
it is ready: 2xx is ready; ``failure_threshold`` failures in a row (no answer within
the timeout, a refused connection, another status) make it not ready again. Nothing
is ready before its first success. Every change is gossiped at once (this node's
NodeInfo ``endpoints``), which is what the routers of every node route by.

A service may also name a liveness probe: readiness says whether to send a replica
requests, liveness whether it is worth keeping. A server wedged for good (a
deadlocked engine still holding its port) fails the liveness probe
``failure_threshold`` times in a row after its initial delay, and the node stops its
run as failed (``on_unhealthy``), so the control state restarts it with its backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from murmur.v1 import types_pb2

_log = logging.getLogger("murmur.replicas")

PORT_FILE = "port"


@dataclass(slots=True)
class _Replica:
    run_id: str
    job_id: str
    service: str
    port: int
    models: tuple[str, ...]
    ready: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    liveness: asyncio.Task[None] | None = field(default=None, repr=False)


def _probe_settings(
    port: int, probe: types_pb2.HttpProbe
) -> tuple[str, aiohttp.ClientTimeout, float, int]:
    """What one probe of a replica on ``port`` asks: its URL, its timeout, the period
    between probes, and the failures in a row that count."""
    url = f"http://127.0.0.1:{port}{probe.path}"
    timeout = aiohttp.ClientTimeout(total=probe.timeout.ToNanoseconds() / 1e9)
    return url, timeout, probe.period.ToNanoseconds() / 1e9, max(1, probe.failure_threshold)


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


class ReplicaEndpoints:
    """Ports and readiness of this node's service replicas.

    Args:
        run_dir: a run's directory (where its port is kept).
        on_change: called (synchronously) whenever a replica starts, becomes ready or
            not, or ends: this node's NodeInfo is published again.
        on_unhealthy: called (synchronously) with a run id and a reason when the
            replica's liveness probe failed too often: the run is to be stopped.
    """

    def __init__(
        self,
        run_dir: Callable[[str], Path],
        on_change: Callable[[], object],
        on_unhealthy: Callable[[str, str], object] = lambda run_id, reason: None,
    ) -> None:
        self._run_dir = run_dir
        self._on_change = on_change
        self._on_unhealthy = on_unhealthy
        self._replicas: dict[str, _Replica] = {}
        self._session: aiohttp.ClientSession | None = None

    def port_of(self, run_id: str) -> int:
        """The run's port: the one it was given (kept in its directory), else a new
        free one, kept there now. Blocking (a file): call from a thread."""
        path = self._run_dir(run_id) / PORT_FILE
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(path.read_text())
        taken = {replica.port for replica in self._replicas.values()}
        port = free_port()
        while port in taken:
            port = free_port()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{port}\n")
        return port

    def watch(self, run_id: str, job_id: str, replica: types_pb2.ReplicaOf, port: int) -> None:
        """Probe the replica ``run_id`` on ``port`` until :meth:`forget`."""
        if run_id in self._replicas:
            return
        entry = _Replica(run_id, job_id, replica.service, port, tuple(replica.models))
        loop = asyncio.get_running_loop()
        entry.task = loop.create_task(self._probe(entry, replica.readiness), name=f"probe-{run_id}")
        if replica.HasField("liveness"):
            entry.liveness = loop.create_task(
                self._live(entry, replica.liveness), name=f"liveness-{run_id}"
            )
        self._replicas[run_id] = entry
        self._changed()

    def forget(self, run_id: str) -> None:
        """The replica ended: stop probing it and gossip it no more."""
        entry = self._replicas.pop(run_id, None)
        if entry is None:
            return
        for task in (entry.task, entry.liveness):
            if task is not None:
                task.cancel()
        self._changed()

    def endpoints(self) -> list[types_pb2.ServiceEndpoint]:
        """This node's replicas as its NodeInfo gossips them, by run id."""
        return [
            types_pb2.ServiceEndpoint(
                service=entry.service,
                job_id=entry.job_id,
                run_id=entry.run_id,
                port=entry.port,
                ready=entry.ready,
                models=entry.models,
            )
            for entry in sorted(self._replicas.values(), key=lambda entry: entry.run_id)
        ]

    async def close(self) -> None:
        for run_id in list(self._replicas):
            self.forget(run_id)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _probe(self, entry: _Replica, probe: types_pb2.HttpProbe) -> None:
        url, timeout, period, threshold = _probe_settings(entry.port, probe)
        await asyncio.sleep(probe.initial_delay.ToNanoseconds() / 1e9)
        failures = 0
        while True:
            ok = await self._answers(url, timeout)
            failures = 0 if ok else failures + 1
            ready = entry.ready
            if ok and not ready:
                ready = True
            elif not ok and ready and failures >= threshold:
                ready = False
            if ready != entry.ready:
                entry.ready = ready
                _log.info(
                    "replica %s of service %s is %s", entry.job_id, entry.service,
                    "ready" if ready else "not ready",
                    extra={"event": "replica.ready" if ready else "replica.unready",
                           "job": entry.job_id},
                )  # fmt: skip
                self._changed()
            await asyncio.sleep(period)

    async def _live(self, entry: _Replica, probe: types_pb2.HttpProbe) -> None:
        """Probes liveness until ``failure_threshold`` failures in a row, then asks
        for the run's stop, once: the run ends, and :meth:`forget` ends this."""
        url, timeout, period, threshold = _probe_settings(entry.port, probe)
        await asyncio.sleep(probe.initial_delay.ToNanoseconds() / 1e9)
        failures = 0
        while failures < threshold:
            failures = 0 if await self._answers(url, timeout) else failures + 1
            if failures < threshold:
                await asyncio.sleep(period)
        reason = f"liveness probe GET {probe.path} failed {threshold} times in a row"
        _log.warning(
            "replica %s of service %s: %s; stopping it", entry.job_id, entry.service, reason,
            extra={"event": "replica.unhealthy", "job": entry.job_id},
        )  # fmt: skip
        try:
            self._on_unhealthy(entry.run_id, reason)
        except Exception:
            _log.exception("stopping an unhealthy replica failed")

    async def _answers(self, url: str, limit: aiohttp.ClientTimeout) -> bool:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.get(url, timeout=limit, allow_redirects=False) as answer:
                return 200 <= answer.status < 300
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    def _changed(self) -> None:
        try:
            self._on_change()
        except Exception:
            _log.exception("publishing a replica's change failed")
