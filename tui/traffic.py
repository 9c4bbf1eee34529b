"""Requests/s, errors/s and latency (median and 99th percentile) per service,
summed over every node's router from what each gossips (``NodeInfo.traffic``: each
router's counts over its last seconds, and a histogram of how long answers took to
begin, in buckets that double: see ``ServiceTraffic`` in
proto/murmur/v1/types.proto). Pure.

A client may send its requests to any node's router, so a service's rate is the sum
of every router's; the histograms are merged before a percentile is read
(percentiles of nodes cannot be combined), with linear interpolation inside the
bucket that holds it: the median, and the 99th percentile, the slow answers a median
hides. A node that is gone counts for nothing: its last word is stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from murmur.tui.format import GONE_NODE_STATES, MISSING
from murmur.v1 import types_pb2

LATENCY_BUCKETS = 20
"""Buckets of the gossiped histogram; the last holds everything from 2^18 ms up."""


@dataclass(frozen=True)
class ServiceRates:
    """One service's traffic through every router, per second."""

    requests: float
    errors: float
    p50_seconds: float | None
    """None when no answer began in the window."""
    p99_seconds: float | None = None
    """Likewise; within its doubling bucket, as the median."""


NO_TRAFFIC = ServiceRates(requests=0.0, errors=0.0, p50_seconds=None)


def bucket_bounds_ms(index: int) -> tuple[float, float]:
    """The latencies (ms) bucket ``index`` counts: [low, high); the last one's high
    is its low (it has no bound)."""
    low = 0.0 if index == 0 else float(2 ** (index - 1))
    if index >= LATENCY_BUCKETS - 1:
        return low, low
    return low, float(2**index)


def quantile_seconds(histogram: Sequence[int], quantile: float) -> float | None:
    """The latency below which ``quantile`` of the counted answers began."""
    total = sum(histogram)
    if total <= 0:
        return None
    rank = quantile * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            low, high = bucket_bounds_ms(index)
            return (low + (high - low) * (rank - seen) / count) / 1000.0
        seen += count
    return None  # not reached: the last non-empty bucket holds rank `total`


def service_rates(nodes: Iterable[types_pb2.NodeInfo]) -> dict[str, ServiceRates]:
    """Each service's rates, summed over the nodes' routers."""
    requests: dict[str, float] = {}
    errors: dict[str, float] = {}
    histograms: dict[str, list[int]] = {}
    for node in nodes:
        if node.state in GONE_NODE_STATES:
            continue
        for traffic in node.traffic:
            seconds = max(1, traffic.window_seconds)
            name = traffic.service
            requests[name] = requests.get(name, 0.0) + traffic.requests / seconds
            errors[name] = errors.get(name, 0.0) + traffic.errors / seconds
            merged = histograms.setdefault(name, [0] * LATENCY_BUCKETS)
            for index, count in enumerate(traffic.latency_ms_log2[:LATENCY_BUCKETS]):
                merged[index] += count
    return {
        name: ServiceRates(
            requests=requests[name],
            errors=errors[name],
            p50_seconds=quantile_seconds(histograms[name], 0.5),
            p99_seconds=quantile_seconds(histograms[name], 0.99),
        )
        for name in requests
    }


def rate_text(per_second: float) -> str:
    """``12``, ``3.4``, ``0.05``: a rate per second, as precise as it is small."""
    if per_second >= 100:
        return f"{per_second:.0f}"
    if per_second >= 1:
        return f"{per_second:.1f}"
    return f"{per_second:.2f}"


def latency_text(seconds: float | None) -> str:
    """``0.8 ms``, ``45 ms``, ``1.2 s``; ``—`` when unknown."""
    if seconds is None:
        return MISSING
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.1f} s"
