"""Murmur's Python client: submit, watch and manage jobs on a Murmur GPU cluster.

    import murmur

    with murmur.Client.from_env() as client:
        job = client.submit_job(murmur.JobSpec(command=["python", "train.py"],
                                               gpus=murmur.GpuRequest(count=1)))
        for line in client.stream_logs(job.id, follow=True):
            print(line.text)

`AsyncClient` is the same API for asyncio code; `Client` runs it for blocking code.
Messages are the protobuf types of the wire contract; every failure is a
`MurmurError` (see `murmur._errors` for the whole tree).

The names below load on first use (PEP 562): ``import murmur`` costs nothing until
one is touched, so the daemon (``murmur.node``), the run supervisors and the CLI's
quick commands do not pay for grpc and the client they may not use.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: the run supervisors import this package, and typing costs
if TYPE_CHECKING:
    from typing import Any

    from murmur._client import (
        AsyncClient,
    )
    from murmur._config import (
        DEFAULT_NODE_ADDRESS,
        ConnectConfig,
        RetryConfig,
        TLSConfig,
        resolve_connect_config,
    )
    from murmur._errors import (
        AlreadyExists,
        Cancelled,
        ConfigError,
        DeadlineExceeded,
        FailedPrecondition,
        InternalError,
        InvalidArgument,
        MurmurError,
        NoCapacity,
        NotFound,
        PermissionDenied,
        Unauthenticated,
        Unavailable,
        Unimplemented,
    )
    from murmur._sync import (
        Client,
    )
    from murmur.v1.cluster_pb2 import (
        ClusterStatus,
        CreateJoinTokenResponse,
        IssueUserCertificateResponse,
        WhoAmIResponse,
    )
    from murmur.v1.types_pb2 import (
        AuditRecord,
        Dataset,
        Event,
        GpuDevice,
        GpuInventory,
        GpuRequest,
        GpuSource,
        GpuStats,
        Identity,
        Job,
        JobRuntime,
        JobSpec,
        JobState,
        LogLine,
        LogStream,
        NodeInfo,
        NodeLoad,
        NodeState,
        Role,
        Run,
    )

_LAZY: dict[str, str] = {
    "AlreadyExists": "murmur._errors",
    "AsyncClient": "murmur._client",
    "AuditRecord": "murmur.v1.types_pb2",
    "Cancelled": "murmur._errors",
    "Client": "murmur._sync",
    "ClusterStatus": "murmur.v1.cluster_pb2",
    "ConfigError": "murmur._errors",
    "ConnectConfig": "murmur._config",
    "CreateJoinTokenResponse": "murmur.v1.cluster_pb2",
    "DEFAULT_NODE_ADDRESS": "murmur._config",
    "Dataset": "murmur.v1.types_pb2",
    "DeadlineExceeded": "murmur._errors",
    "Event": "murmur.v1.types_pb2",
    "FailedPrecondition": "murmur._errors",
    "GpuDevice": "murmur.v1.types_pb2",
    "GpuInventory": "murmur.v1.types_pb2",
    "GpuRequest": "murmur.v1.types_pb2",
    "GpuSource": "murmur.v1.types_pb2",
    "GpuStats": "murmur.v1.types_pb2",
    "Identity": "murmur.v1.types_pb2",
    "InternalError": "murmur._errors",
    "InvalidArgument": "murmur._errors",
    "IssueUserCertificateResponse": "murmur.v1.cluster_pb2",
    "Job": "murmur.v1.types_pb2",
    "JobRuntime": "murmur.v1.types_pb2",
    "JobSpec": "murmur.v1.types_pb2",
    "JobState": "murmur.v1.types_pb2",
    "LogLine": "murmur.v1.types_pb2",
    "LogStream": "murmur.v1.types_pb2",
    "MurmurError": "murmur._errors",
    "NoCapacity": "murmur._errors",
    "NodeInfo": "murmur.v1.types_pb2",
    "NodeLoad": "murmur.v1.types_pb2",
    "NodeState": "murmur.v1.types_pb2",
    "NotFound": "murmur._errors",
    "PermissionDenied": "murmur._errors",
    "RetryConfig": "murmur._config",
    "Role": "murmur.v1.types_pb2",
    "Run": "murmur.v1.types_pb2",
    "TLSConfig": "murmur._config",
    "Unauthenticated": "murmur._errors",
    "Unavailable": "murmur._errors",
    "Unimplemented": "murmur._errors",
    "WhoAmIResponse": "murmur.v1.cluster_pb2",
    "resolve_connect_config": "murmur._config",
}
"""Each public name and the module it comes from."""

__version__: str


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("murmur-cluster")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        return "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = version = _version()
        return version
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'murmur' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup finds it without us
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | {"__version__"})


__all__ = [
    "DEFAULT_NODE_ADDRESS",
    "AlreadyExists",
    "AsyncClient",
    "AuditRecord",
    "Cancelled",
    "Client",
    "ClusterStatus",
    "ConfigError",
    "ConnectConfig",
    "CreateJoinTokenResponse",
    "Dataset",
    "DeadlineExceeded",
    "Event",
    "FailedPrecondition",
    "GpuDevice",
    "GpuInventory",
    "GpuRequest",
    "GpuSource",
    "GpuStats",
    "Identity",
    "InternalError",
    "InvalidArgument",
    "IssueUserCertificateResponse",
    "Job",
    "JobRuntime",
    "JobSpec",
    "JobState",
    "LogLine",
    "LogStream",
    "MurmurError",
    "NoCapacity",
    "NodeInfo",
    "NodeLoad",
    "NodeState",
    "NotFound",
    "PermissionDenied",
    "RetryConfig",
    "Role",
    "Run",
    "TLSConfig",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "WhoAmIResponse",
    "__version__",
    "resolve_connect_config",
]
