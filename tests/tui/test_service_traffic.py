"""The services view's traffic: every node's router's counts summed per service, the
latency histograms merged before the median is read; and what a router gossips reads
back as its rates. Pure."""

from __future__ import annotations

import pytest

from murmur.node.router.traffic import LATENCY_BUCKETS as ROUTER_BUCKETS
from murmur.node.router.traffic import WINDOW_SECONDS, TrafficWindow
from murmur.tui.traffic import (
    LATENCY_BUCKETS,
    NO_TRAFFIC,
    ServiceRates,
    latency_text,
    quantile_seconds,
    rate_text,
    service_rates,
)
from murmur.v1 import types_pb2


def node(
    name: str,
    *traffic: types_pb2.ServiceTraffic,
    state: types_pb2.NodeState.ValueType = types_pb2.NODE_STATE_ALIVE,
) -> types_pb2.NodeInfo:
    return types_pb2.NodeInfo(name=name, state=state, traffic=traffic)


def traffic(
    service: str, window: int, requests: int, errors: int = 0, histogram: tuple[int, ...] = ()
) -> types_pb2.ServiceTraffic:
    return types_pb2.ServiceTraffic(
        service=service, window_seconds=window, requests=requests, errors=errors,
        latency_ms_log2=histogram,
    )  # fmt: skip


def test_rates_are_summed_over_routers_and_histograms_merged_before_the_median() -> None:
    # Router 1: 60 fast answers ([1, 2) ms) in 30 s. Router 2: 20 slow ones ([512,
    # 1024) ms) in 10 s. The merged median is a fast one; the mean of the two nodes'
    # medians would be ~400 ms, which no request took.
    rates = service_rates(
        [
            node("a", traffic("llama", 30, 60, histogram=(0, 60))),
            node("b", traffic("llama", 10, 22, errors=2, histogram=(0,) * 10 + (20,))),
            node("c", traffic("coder", 30, 3, errors=3)),
            node("gone", traffic("llama", 1, 1000), state=types_pb2.NODE_STATE_DEAD),
            node("quiet"),
        ]
    )
    assert set(rates) == {"llama", "coder"}
    assert rates["llama"].requests == pytest.approx(60 / 30 + 22 / 10)
    assert rates["llama"].errors == pytest.approx(0.2)
    assert rates["llama"].p50_seconds == pytest.approx((1 + 40 / 60) / 1000)
    # The slow router's answers, which the median hides, are the 99th percentile.
    assert rates["llama"].p99_seconds == pytest.approx((512 + 512 * (79.2 - 60) / 20) / 1000)
    assert rates["coder"] == ServiceRates(requests=0.1, errors=0.1, p50_seconds=None)
    assert rates.get("absent", NO_TRAFFIC) == NO_TRAFFIC


@pytest.mark.parametrize(
    ("histogram", "median_ms"),
    [
        ((), None),
        ((0, 0, 0), None),
        ((4,), 0.5),  # bucket 0: [0, 1) ms
        ((0, 0, 4), 3.0),  # [2, 4) ms, half way
        ((1, 0, 0, 0, 0, 0, 3), 32 + 32 * (2 - 1) / 3),
        ((0,) * (LATENCY_BUCKETS - 1) + (5,), 2.0**18),  # the open-ended last bucket
    ],
)
def test_the_median_is_read_from_the_histogram(
    histogram: tuple[int, ...], median_ms: float | None
) -> None:
    found = quantile_seconds(histogram, 0.5)
    if median_ms is None:
        assert found is None
    else:
        assert found == pytest.approx(median_ms / 1000)


def test_rates_and_latencies_read_as_people_write_them() -> None:
    assert [rate_text(r) for r in (0.0, 0.05, 3.44, 15.05, 250.4)] == [
        "0.00", "0.05", "3.4", "15.1", "250",
    ]  # fmt: skip
    assert [latency_text(s) for s in (None, 0.0008, 0.048, 1.25)] == [
        "—", "0.8 ms", "48 ms", "1.2 s",
    ]  # fmt: skip


def test_what_a_router_gossips_reads_back_as_its_rates() -> None:
    now = [500.0]
    window = TrafficWindow(window_seconds=WINDOW_SECONDS, clock=lambda: now[0])
    for latency in (0.040, 0.041, 0.045, 0.050, 0.300):
        window.record("llama", latency=latency, error=False)
    window.record("llama", latency=None, error=True)
    now[0] += WINDOW_SECONDS - 1  # the requests are still in the window, a whole one
    gossiped = node("gpu-01", *window.summary())
    rates = service_rates([gossiped])["llama"]
    assert ROUTER_BUCKETS == LATENCY_BUCKETS  # both sides read the proto's buckets alike
    assert rates.requests == pytest.approx(6 / WINDOW_SECONDS)
    assert rates.errors == pytest.approx(1 / WINDOW_SECONDS)
    assert rates.p50_seconds is not None
    assert 0.032 <= rates.p50_seconds < 0.064  # the bucket that holds 45 ms
    assert rates.p99_seconds is not None
    assert 0.256 <= rates.p99_seconds < 0.512  # the bucket that holds the 300 ms one
