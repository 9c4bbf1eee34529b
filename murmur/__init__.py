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
"""

from importlib import metadata as _metadata

from murmur._client import AsyncClient
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
from murmur._sync import Client
from proto.murmur.v1.cluster_pb2 import (
    ClusterStatus,
    CreateJoinTokenResponse,
    IssueUserCertificateResponse,
    WhoAmIResponse,
)
from proto.murmur.v1.types_pb2 import (
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

try:
    __version__ = _metadata.version("murmur-cluster")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

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
