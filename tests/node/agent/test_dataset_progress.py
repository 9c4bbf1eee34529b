"""`add_dataset(on_progress=...)` against a real node: AddDatasetWithProgress end to end."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc
import pytest

import murmur
from murmur import AsyncClient, resolve_connect_config
from murmur.certs import Role, server_certificate_chain
from murmur.v1 import cluster_pb2, cluster_pb2_grpc, types_pb2
from tests.support.datasets import bytes_scanned_in
from tests.support.nodes import Lab, NodeProcess

SMALL_FILES = 3000


def client_for(node: NodeProcess, lab: Lab) -> AsyncClient:
    return AsyncClient(resolve_connect_config(node=node.address, identity=lab.admin_identity))


def sparse(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)  # holes: no disk used, but every byte is read and hashed


def large_tree(root: Path, *, sparse_bytes: int) -> Path:
    """A few thousand small files around one big (sparse) file that takes the scan a while."""
    for part in ("a", "c"):
        (root / part).mkdir(parents=True)
        for i in range(SMALL_FILES // 2):
            (root / part / f"{i:05}.txt").write_text(f"{part}{i}\n")
    sparse(root / "b" / "big.bin", sparse_bytes)
    return root


async def test_progress_grows_and_the_record_is_what_the_unary_call_gives(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    big = bytes_scanned_in(1.5, tmp_path)  # reports come every 0.25 s; 2 are needed
    root = large_tree(ca_node.data_dir / "datasets" / "tree", sparse_bytes=big)
    updates: list[cluster_pb2.DatasetScanProgress] = []
    async with client_for(ca_node, lab) as client:
        streamed = await client.add_dataset("tree", str(root), on_progress=updates.append)
        unary = await client.add_dataset("tree-again", str(root), timeout=60)
        audit = await client.list_audit(limit=10)

    hashing = [u for u in updates if not u.listing]
    assert len(hashing) >= 2, updates
    scanned = [(u.files_scanned, u.bytes_scanned) for u in hashing]
    assert scanned == sorted(scanned)
    assert hashing[0].bytes_scanned < hashing[-1].bytes_scanned
    assert {(u.files_total, u.bytes_total) for u in hashing} == {
        (SMALL_FILES + 1, streamed.size_bytes)
    }
    assert any(u.current_path == "b/big.bin" for u in hashing)

    assert streamed.file_count == SMALL_FILES + 1
    assert streamed.name == "tree"
    assert streamed.node == "node-1"
    assert streamed.added_by == "admin"
    for field in ("node", "path", "size_bytes", "file_count", "manifest_sha256", "added_by"):
        assert getattr(streamed, field) == getattr(unary, field), field

    (record,) = [r for r in audit if r.action == "AddDatasetWithProgress"]
    assert (record.user, record.target, record.result) == ("admin", "tree", "OK")


@pytest.mark.parametrize(
    ("path", "name", "error", "fragment"),
    [
        ("relative/path", "x", murmur.InvalidArgument, "must be absolute"),
        ("/etc", "x", murmur.InvalidArgument, "outside this node's data roots"),
        ("{root}/missing", "x", murmur.InvalidArgument, "does not exist"),
        ("{root}/ok", "Bad Name", murmur.InvalidArgument, "is invalid"),
        ("{root}/ok", "taken", murmur.AlreadyExists, "already registered"),
    ],
)
async def test_a_refused_add_reports_nothing_and_adds_nothing(
    lab: Lab,
    ca_node: NodeProcess,
    path: str,
    name: str,
    error: type[murmur.MurmurError],
    fragment: str,
) -> None:
    root = ca_node.data_dir / "datasets"
    (root / "ok").mkdir(parents=True)
    (root / "ok" / "f").write_text("x")
    updates: list[cluster_pb2.DatasetScanProgress] = []
    async with client_for(ca_node, lab) as client:
        await client.add_dataset("taken", str(root / "ok"))
        with pytest.raises(error) as raised:
            await client.add_dataset(
                name, path.format(root=root), on_progress=updates.append, timeout=30
            )
        after = await client.list_datasets()
        audit = await client.list_audit(limit=10)
    assert fragment in raised.value.message
    assert "\n" not in raised.value.message
    assert updates == []
    assert [d.name for d in after] == ["taken"]
    refused = [r for r in audit if r.action == "AddDatasetWithProgress"]
    assert [r.result for r in refused] == [raised.value.code.name]  # type: ignore[union-attr]


async def test_a_cancelled_add_stops_the_scan_and_adds_nothing(
    lab: Lab, ca_node: NodeProcess
) -> None:
    root = ca_node.data_dir / "datasets" / "huge"
    sparse(root / "huge.bin", 256 * 1024**3)  # minutes of hashing
    first_update = asyncio.Event()
    async with client_for(ca_node, lab) as client:
        adding = asyncio.create_task(
            client.add_dataset("huge", str(root), on_progress=lambda _: first_update.set())
        )
        await asyncio.wait_for(first_update.wait(), timeout=30)
        adding.cancel()
        with pytest.raises(asyncio.CancelledError):
            await adding

        for _ in range(200):  # the node logs it when the scan's thread is told to stop
            if '"dataset.scan_stopped"' in ca_node.log():
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"the scan did not stop:\n{ca_node.log()[-2000:]}")
        assert await client.list_datasets() == []
        # Recorded once the node sees the stream end, which may be after the client did.
        for _ in range(200):
            audit = await client.list_audit(limit=10)
            if cancelled := [r for r in audit if r.action == "AddDatasetWithProgress"]:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"no audit record of the cancelled add: {audit}")
        (record,) = cancelled
        assert (record.target, record.result) == ("huge", "CANCELLED")

        # The name was never taken: a small tree registers under it at once.
        (root / "huge.bin").unlink()
        (root / "small.txt").write_text("small\n")
        added = await client.add_dataset("huge", str(root), on_progress=lambda _: None)
    assert added.file_count == 1


class OlderNode(cluster_pb2_grpc.ClusterServiceServicer):
    """A node whose murmur predates AddDatasetWithProgress (grpc answers UNIMPLEMENTED)."""

    async def AddDataset(
        self, request: cluster_pb2.AddDatasetRequest, context: object
    ) -> types_pb2.Dataset:
        return types_pb2.Dataset(name=request.name, path=request.path, file_count=1)


async def test_a_node_without_progress_is_asked_the_unary_way(lab: Lab, tmp_path: Path) -> None:
    node = lab.ca.issue(name="old", role=Role.NODE, validity_days=1)
    server = grpc.aio.server()
    # Only AddDataset: the generated base answers UNIMPLEMENTED for the rest.
    cluster_pb2_grpc.add_ClusterServiceServicer_to_server(OlderNode(), server)  # type: ignore[abstract]
    credentials = grpc.ssl_server_credentials(
        [(node.key_pem, server_certificate_chain(node))],
        root_certificates=lab.ca.certificate_pem,
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        config = resolve_connect_config(node=f"127.0.0.1:{port}", identity=lab.admin_identity)
        updates: list[cluster_pb2.DatasetScanProgress] = []
        async with AsyncClient(config) as client:
            added = await client.add_dataset("old", "/data/old", on_progress=updates.append)
    finally:
        await server.stop(grace=None)
    assert (added.name, added.path, added.file_count) == ("old", "/data/old", 1)
    assert updates == []


def test_the_blocking_client_reports_progress_from_its_loop_thread(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    big = bytes_scanned_in(1.0, tmp_path)
    root = large_tree(ca_node.data_dir / "datasets" / "tree", sparse_bytes=big)
    threads: set[str] = set()
    config = resolve_connect_config(node=ca_node.address, identity=lab.admin_identity)
    with murmur.Client(config) as client:
        added = client.add_dataset(
            "tree", str(root), on_progress=lambda _: threads.add(threading.current_thread().name)
        )
    assert added.file_count == SMALL_FILES + 1
    assert threads == {"murmur-client-loop"}


async def test_a_viewer_may_not_add_and_the_refusal_is_audited(
    lab: Lab, ca_node: NodeProcess
) -> None:
    (ca_node.data_dir / "datasets" / "ok").mkdir(parents=True)
    viewer = lab.issue_identity("vera", Role.VIEWER)
    config = resolve_connect_config(node=ca_node.address, identity=viewer)
    async with AsyncClient(config) as client:
        with pytest.raises(murmur.PermissionDenied, match="AddDatasetWithProgress"):
            await client.add_dataset(
                "ok", str(ca_node.data_dir / "datasets" / "ok"), on_progress=lambda _: None
            )
    async with client_for(ca_node, lab) as admin:
        assert await admin.list_datasets() == []
        audit = await admin.list_audit(limit=5)
    refused = [(r.user, r.action, r.result) for r in audit if r.user == "vera"]
    assert refused == [("vera", "AddDatasetWithProgress", "PERMISSION_DENIED")]


async def test_an_exception_from_on_progress_cancels_the_add(
    lab: Lab, ca_node: NodeProcess
) -> None:
    root = ca_node.data_dir / "datasets" / "huge"
    sparse(root / "huge.bin", 256 * 1024**3)

    def give_up(progress: cluster_pb2.DatasetScanProgress) -> None:
        raise RuntimeError("enough")

    async with client_for(ca_node, lab) as client:
        with pytest.raises(RuntimeError, match="enough"):
            await client.add_dataset("huge", str(root), on_progress=give_up)
        for _ in range(200):
            if '"dataset.scan_stopped"' in ca_node.log():
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the scan did not stop")
        assert await client.list_datasets() == []
