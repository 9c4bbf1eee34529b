"""Hostile requests to a real node end in deliberate codes, never in a handler crash.

Each test here pins a crash the RPC fuzzer (tests/fuzz/rpc.py) found: bytes that
do not decode, numbers beyond what SQLite holds, states the version does not know,
a message over the size limit.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from google.protobuf.message import Message

from murmur.certs import NODE_TLS_NAME, IdentityBundle, Role
from murmur.node.api.server import MAX_MESSAGE_BYTES
from murmur.v1 import cluster_pb2, node_pb2, types_pb2
from tests.support.cluster import mtls_channel
from tests.support.nodes import Lab, NodeProcess

BIG = 2**64 - 1


def _identity(data: bytes) -> bytes:
    return data


async def _unary(channel: grpc.aio.Channel, method: str, payload: bytes | Message) -> str:
    """The call's status code name and message, ``OK`` when it answers."""
    if isinstance(payload, Message):
        payload = payload.SerializeToString()
    call = channel.unary_unary(
        method, request_serializer=_identity, response_deserializer=_identity
    )
    try:
        await call(payload, timeout=15)
    except grpc.aio.AioRpcError as exc:
        return f"{exc.code().name}: {exc.details()}"
    return "OK"


@pytest.fixture
def node_bundle(lab: Lab) -> IdentityBundle:
    return lab.ca.issue(name="peer-x", role=Role.NODE, validity_days=1)


async def _status_ok(node: NodeProcess, lab: Lab) -> None:
    async with mtls_channel(node, IdentityBundle.read(lab.admin_identity)) as channel:
        assert await _unary(channel, "/murmur.v1.ClusterService/GetStatus", b"") == "OK"


GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, a 4 GiB length, no body


async def test_a_request_that_does_not_decode_is_invalid_argument_for_every_kind_of_call(
    lab: Lab, ca_node: NodeProcess, node_bundle: IdentityBundle
) -> None:
    admin = IdentityBundle.read(lab.admin_identity)
    async with mtls_channel(ca_node, admin) as channel:
        answer = await _unary(channel, "/murmur.v1.ClusterService/SubmitJob", GARBAGE)
        assert answer.startswith("INVALID_ARGUMENT: the request is not a valid murmur.v1.")
        assert "SubmitJobRequest" in answer

        stream = channel.unary_stream(
            "/murmur.v1.ClusterService/WatchJobs",
            request_serializer=_identity,
            response_deserializer=_identity,
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in stream(GARBAGE, timeout=10):
                pass
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "WatchJobsRequest" in (refused.value.details() or "")

    async with mtls_channel(ca_node, node_bundle) as channel:
        ingest = channel.stream_unary(
            "/murmur.v1.NodeService/RaftStream",
            request_serializer=_identity,
            response_deserializer=_identity,
        )

        async def requests() -> AsyncIterator[bytes]:
            yield GARBAGE

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ingest(requests(), timeout=10)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "RaftRequest" in (refused.value.details() or "")
    assert "Unexpected [DecodeError]" not in ca_node.log()
    await _status_ok(ca_node, lab)


async def test_the_join_listener_refuses_undecodable_bytes_too(
    lab: Lab, ca_node: NodeProcess
) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=lab.ca.certificate_pem)
    async with grpc.aio.secure_channel(
        ca_node.join_address,
        credentials,
        options=[("grpc.ssl_target_name_override", NODE_TLS_NAME)],
    ) as channel:
        answer = await _unary(channel, "/murmur.v1.JoinService/Join", GARBAGE)
    assert answer.startswith("INVALID_ARGUMENT: the request is not a valid murmur.v1.JoinRequest")


async def test_numbers_beyond_what_the_store_holds_are_refused_not_crashed_on(
    lab: Lab, ca_node: NodeProcess, node_bundle: IdentityBundle
) -> None:
    admin = IdentityBundle.read(lab.admin_identity)
    async with mtls_channel(ca_node, admin) as channel:
        answer = await _unary(
            channel,
            "/murmur.v1.ClusterService/ListAudit",
            cluster_pb2.ListAuditRequest(before_id=BIG),
        )
        assert answer.startswith("INVALID_ARGUMENT: before_id must be at most")
        beyond_year_one = cluster_pb2.ListAuditRequest()
        beyond_year_one.since.seconds = -(2**62)
        answer = await _unary(channel, "/murmur.v1.ClusterService/ListAudit", beyond_year_one)
        assert answer.startswith("INVALID_ARGUMENT: since is not a valid time"), answer

        # Events after an id no event can have: none yet, and no crash.
        stream = channel.unary_stream(
            "/murmur.v1.ClusterService/WatchEvents",
            request_serializer=_identity,
            response_deserializer=_identity,
        )
        with pytest.raises(grpc.aio.AioRpcError) as cut:
            async for _ in stream(
                cluster_pb2.WatchEventsRequest(since_id=BIG).SerializeToString(), timeout=1.5
            ):
                pass
        assert cut.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

    spec = types_pb2.JobSpec(command=["true"])
    async with mtls_channel(ca_node, node_bundle) as channel:
        for method, request, fragment in [
            (
                "StartRun",
                node_pb2.StartRunRequest(job_id="j", run_id="r", spec=spec, term=BIG),
                "term must be at most",
            ),
            (
                "StartRun",
                node_pb2.StartRunRequest(job_id="j", run_id="r", spec=spec, sender_term=BIG),
                "sender_term must be at most",
            ),
            (
                "StartRun",
                node_pb2.StartRunRequest(
                    job_id="j", run_id="r", spec=spec, term=1, lease_seconds=math.nan
                ),
                "lease_seconds must be between",
            ),
            (  # would have made its directory outside the runs directory
                "StartRun",
                node_pb2.StartRunRequest(job_id="j", run_id="../escape", spec=spec, term=1),
                "'../escape' is not a run id",
            ),
            ("StopRun", node_pb2.StopRunRequest(run_id="r", term=BIG), "term must be at most"),
            ("ListRuns", node_pb2.ListRunsRequest(term=BIG), "term must be at most"),
            (
                "ListAudit",
                cluster_pb2.ListAuditRequest(before_id=BIG),
                "before_id must be at most",
            ),
            (  # used to stop the daemon: saving the term overflowed SQLite
                "Raft",
                node_pb2.RaftRequest(vote=node_pb2.RaftVote(term=BIG, candidate="peer-x")),
                "beyond",
            ),
            (
                "ListRuns",
                node_pb2.ListRunsRequest(term=1, lease_seconds=math.inf),
                "lease_seconds must be between",
            ),
            (
                "ReportRun",
                node_pb2.ReportRunRequest(run=types_pb2.Run(id="r", job_id="j", state=99)),
                "bad run report: unknown job state 99",
            ),
        ]:
            answer = await _unary(channel, f"/murmur.v1.NodeService/{method}", request)
            assert answer.startswith("INVALID_ARGUMENT"), (method, answer)
            assert fragment in answer, (method, answer)
        for run_id in ("a\x00b", "../../etc", ".."):
            # A node relaying a log names the run alone: it must name a run directory.
            stream = channel.unary_stream(
                "/murmur.v1.ClusterService/StreamLogs",
                request_serializer=_identity,
                response_deserializer=_identity,
            )
            request = cluster_pb2.StreamLogsRequest(run_id=run_id)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in stream(request.SerializeToString(), timeout=10):
                    pass
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, run_id
            assert "is not a run id" in (refused.value.details() or "")
    await _status_ok(ca_node, lab)


async def test_a_message_over_the_size_limit_is_resource_exhausted(
    lab: Lab, ca_node: NodeProcess
) -> None:
    admin = IdentityBundle.read(lab.admin_identity)
    oversized = cluster_pb2.SubmitJobRequest(
        spec=types_pb2.JobSpec(command=["echo", "x" * (MAX_MESSAGE_BYTES + 1)])
    )
    async with mtls_channel(ca_node, admin) as channel:
        answer = await _unary(channel, "/murmur.v1.ClusterService/SubmitJob", oversized)
    assert answer.startswith("RESOURCE_EXHAUSTED"), answer
    await _status_ok(ca_node, lab)
