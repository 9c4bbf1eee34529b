"""The services view driven with Pilot against the in-memory fake: the services, the
replicas of the one under the cursor, and a new read of the services exactly when the
streams tell of a replica's change (a replica's job, a node's endpoints), not on
every telemetry sample."""

from __future__ import annotations

from murmur import PermissionDenied
from murmur.tui import Connection, MurmurTop
from murmur.tui.screens.job import JobScreen
from murmur.tui.screens.services import ServicesScreen
from murmur.v1 import types_pb2
from tests.tui.conftest import wait_for_text
from tests.tui.fake_cluster import EPOCH, FakeCluster, make_job, make_node, make_service
from tests.tui.screen_text import screen_text

SIZE = (140, 40)


def gpu01(*, second_ready: bool, utilization: int = 0) -> types_pb2.NodeInfo:
    """The node running both replicas of llama, gossiping their endpoints."""
    node = make_node("gpu-01", leader=True, utilization=[utilization])
    for job_id, port, ready in (("j-201", 41017, True), ("j-202", 41018, second_ready)):
        node.endpoints.add(service="llama", job_id=job_id, port=port, ready=ready)
    return node


def llama(*, second_ready: bool) -> types_pb2.Service:
    return make_service(
        "llama", model="llama-3-8b", aliases=["llama"], user="carol",
        replicas=[("j-201", "gpu-01", 41017, True), ("j-202", "gpu-01", 41018, second_ready)],
    )  # fmt: skip


def lab() -> FakeCluster:
    coder = make_service(
        "coder", model="qwen2.5-coder-7b", user="bob", replicas=[("j-301", "", 0, False)]
    )
    return FakeCluster(
        nodes=[gpu01(second_ready=False)], services=[llama(second_ready=False), coder]
    )


def reads(fake: FakeCluster) -> int:
    return sum(1 for method, _ in fake.calls if method == "list_services")


async def test_services_and_the_replicas_under_the_cursor_follow_the_streams() -> None:
    fake = lab()
    app = MurmurTop(Connection(fake.address, lambda address: fake), clock=lambda: EPOCH)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for_text(pilot, "★ gpu-01")
        await pilot.press("colon", *"svc", "enter")
        assert isinstance(app.screen, ServicesScreen)
        # Sorted by name: coder first, its one replica waiting to be placed.
        text = await wait_for_text(pilot, "2 of 2 shown", "replicas of coder  0/1 ready")
        assert "qwen2.5-coder-7b" in text
        assert "llama-3-8b" in text
        assert "waiting: 1 GPU asked, none free" in text
        assert "j-201" not in text
        await pilot.press("down")
        await pilot.pause()
        # At once, not at the next repaint of the whole view.
        text = screen_text(app)
        assert "replicas of llama  1/2 ready" in text
        assert "j-201" in text
        assert "41018" in text
        assert "models llama-3-8b, llama" in text
        assert "j-301" not in text
        assert text.count("gpu-01") >= 2

        # A telemetry sample changes no replica: no new read.
        before = reads(fake)
        fake.push_node(gpu01(second_ready=False, utilization=50))
        await pilot.pause(0.5)
        assert reads(fake) == before

        # The second replica passes its probe: its node gossips a new endpoint.
        fake.services[0] = llama(second_ready=True)
        fake.push_node(gpu01(second_ready=True))
        await wait_for_text(pilot, "replicas of llama  2/2 ready")
        assert reads(fake) == before + 1

        # A replica's job changes (the service was scaled to 3): read again.
        fake.services[0].spec.replicas = 3
        job = make_job("j-203", name="llama", state=types_pb2.JOB_STATE_PENDING)
        job.spec.replica_of.service, job.spec.replica_of.slot = "llama", 2
        fake.push_job(job)
        await wait_for_text(pilot, "replicas of llama  2/3 ready")

        # ctrl+r reads again whatever the streams say.
        before = reads(fake)
        await pilot.press("ctrl+r")
        await pilot.pause(0.2)
        assert reads(fake) == before + 1

        # Enter goes into the replicas, Enter again opens a replica's job, Esc comes back.
        await pilot.press("enter", "down", "enter")
        assert isinstance(app.screen, JobScreen)
        assert app.screen.job_id == "j-202"
        await pilot.press("escape")
        assert isinstance(app.screen, ServicesScreen)
        assert app.screen.replicas_table.has_focus
        await pilot.press("escape")
        assert app.screen.table.has_focus


async def test_a_refused_read_is_one_notification_not_a_retry_loop() -> None:
    fake = lab()
    fake.refuse["list_services"] = PermissionDenied("no services for you", code=None)
    app = MurmurTop(Connection(fake.address, lambda address: fake), clock=lambda: EPOCH)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for_text(pilot, "★ gpu-01")
        await pilot.press("colon", *"services", "enter")
        await wait_for_text(pilot, "list services refused by the node", "0 of 0 shown")
        fake.push_node(gpu01(second_ready=False, utilization=50))
        await pilot.pause(0.3)  # the sample's repaint has come and gone
        assert reads(fake) == 1


def with_traffic(
    node: types_pb2.NodeInfo, window: int, requests: int, errors: int, bucket: int
) -> types_pb2.NodeInfo:
    """``node`` whose router carried ``requests`` for llama over ``window`` seconds,
    every answer begun within the latency bucket ``bucket``."""
    histogram = [0] * bucket + [requests - errors]
    node.traffic.add(
        service="llama", window_seconds=window, requests=requests, errors=errors,
        latency_ms_log2=histogram,
    )  # fmt: skip
    return node


async def test_requests_per_second_and_latency_are_summed_over_every_router() -> None:
    fake = lab()
    # Two routers carried llama's requests: 300 in 30 s here, 50 in 10 s there, all
    # begun within [32, 64) ms: 10 + 5 = 15 requests/s, a median of 48 ms.
    gpu02 = make_node("gpu-02")
    fake.nodes = [
        with_traffic(gpu01(second_ready=False), window=30, requests=303, errors=3, bucket=6),
        with_traffic(gpu02, window=10, requests=50, errors=0, bucket=6),
    ]
    app = MurmurTop(Connection(fake.address, lambda address: fake), clock=lambda: EPOCH)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for_text(pilot, "★ gpu-01")
        await pilot.press("colon", *"svc", "enter")
        text = await wait_for_text(pilot, "REQ/S", "P50", "P99", "llama-3-8b")
        llama_row = next(line for line in text.splitlines() if "llama-3-8b" in line)
        assert "15.1" in llama_row  # 303 / 30 + 50 / 10
        assert "0.10" in llama_row  # 3 errors in 30 s
        assert "48 ms" in llama_row
        assert "64 ms" in llama_row  # p99: near the top of the [32, 64) ms bucket
        coder_row = next(line for line in text.splitlines() if "qwen2.5-coder-7b" in line)
        assert "—" in coder_row  # no answer: no latency
        await pilot.press("down")
        await wait_for_text(pilot, "15.1 req/s, 0.10 err/s, p50 48 ms, p99 64 ms")

        # The rates follow the node stream, with no new read of the services; a node
        # that is gone counts no more.
        before = reads(fake)
        gone = make_node("gpu-02", state=types_pb2.NODE_STATE_DEAD)
        fake.push_node(with_traffic(gone, window=10, requests=50, errors=0, bucket=6))
        await wait_for_text(pilot, "10.1 req/s")
        assert reads(fake) == before
