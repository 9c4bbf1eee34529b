"""The slice of `murmur.AsyncClient` the dashboard uses, as a Protocol.

`AsyncClient` satisfies it as is; tests and the benchmark hand the app a fake with
the same methods, so the views are exercised without a network where that helps.
"""

# `timeout=` mirrors AsyncClient's keyword: a gRPC deadline, not an asyncio timeout.
# ruff: noqa: ASYNC109

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Protocol

from murmur.v1 import cluster_pb2, types_pb2


class ClusterApi(Protocol):
    @property
    def address(self) -> str: ...

    async def close(self) -> None: ...

    async def whoami(self, *, timeout: float | None = None) -> cluster_pb2.WhoAmIResponse: ...

    def watch_nodes(self) -> AsyncIterator[types_pb2.NodeInfo]: ...

    def watch_jobs(self) -> AsyncIterator[types_pb2.Job]: ...

    def watch_events(
        self, *, since_id: int = 0, subject: str = ""
    ) -> AsyncIterator[types_pb2.Event]: ...

    def stream_logs(
        self,
        job_id: str,
        *,
        run_id: str = "",
        follow: bool = False,
        tail_lines: int = 0,
        from_offset: int = 0,
    ) -> AsyncIterator[types_pb2.LogLine]: ...

    async def list_datasets(self, *, node: str = "") -> list[types_pb2.Dataset]: ...

    async def list_services(self) -> list[types_pb2.Service]: ...

    async def submit_job(self, spec: types_pb2.JobSpec) -> types_pb2.Job: ...

    async def cancel_job(self, job_id: str, *, reason: str = "") -> types_pb2.Job: ...

    async def drain_node(self, name: str, *, undrain: bool = False) -> types_pb2.NodeInfo: ...


ClientFactory = Callable[[str], ClusterApi]
"""Makes a client for a node's HOST:PORT; the connection calls it again on failover."""
