"""What this router sent each service over the last ``WINDOW_SECONDS``: requests,
errors and how long answers took to begin, gossiped in the node's NodeInfo
(``traffic``) so that ``murmur top`` sums requests/s over every node's router and
merges the latency histograms for each service's median.

Memory is bounded whatever the load: per service, a ring of ``WINDOW_SECONDS``
one-second buckets, each a request count, an error count and a latency histogram of
``LATENCY_BUCKETS`` counts. Services come from the routing table, never from what a
client wrote (a request for an unknown model counts nowhere), and a service with no
request in the window is forgotten at the next summary.

Latency is the time from the request's arrival to the first byte of the replica's
answer: the whole answer for one that is not streamed, the time to the first event
for a stream (a long generation's length is the client's choice, not the service's
speed). Router refusals (no ready replica, every replica failed) count as requests
and errors but have no latency.

The histogram's buckets double (``latency_bucket``): bucket 0 counts answers begun
within 1 ms, bucket ``i`` those within [2^(i-1), 2^i) ms, the last the rest; merged
over nodes, a median read from it with linear interpolation is off by less than its
bucket's width (as Prometheus's ``histogram_quantile``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from murmur.v1 import types_pb2

WINDOW_SECONDS = 30
"""How far back requests/s and latency look: long enough to smooth bursts, short
enough that ``murmur top`` shows a change within the minute."""
LATENCY_BUCKETS = 20
"""Up to 2^18 ms (4.4 min) in doubling buckets; the last holds everything slower."""


def latency_bucket(seconds: float) -> int:
    """The histogram bucket of a latency (see the module docstring)."""
    milliseconds = seconds * 1000.0
    if not milliseconds >= 1.0:  # NaN and negative clock steps land in bucket 0 too
        return 0
    return min(int(math.log2(milliseconds)) + 1, LATENCY_BUCKETS - 1)


@dataclass(slots=True)
class _Second:
    at: int = -1
    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * LATENCY_BUCKETS)

    def restart(self, at: int) -> None:
        self.at = at
        self.requests = 0
        self.errors = 0
        self.latency[:] = [0] * LATENCY_BUCKETS


@dataclass(slots=True)
class AnswerTiming:
    """When one request was asked of the replicas, and when its answer began."""

    asked: float
    began: float | None = None

    def begin(self) -> None:
        """The answer's first byte is here (later calls change nothing)."""
        if self.began is None:
            self.began = time.monotonic()

    @property
    def latency(self) -> float | None:
        return None if self.began is None else self.began - self.asked


class TrafficWindow:
    """Requests, errors and latency per service, over a sliding window.

    Args:
        window_seconds: how far back a summary looks.
        clock: seconds, monotonic.
    """

    def __init__(
        self,
        *,
        window_seconds: int = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_seconds = window_seconds
        self._clock = clock
        self._started = clock()
        self._rings: dict[str, list[_Second]] = {}

    def record(self, service: str, *, latency: float | None, error: bool) -> None:
        """One request for ``service``: ``latency`` is None when no replica answered
        (the router refused it)."""
        now = int(self._clock())
        ring = self._rings.get(service)
        if ring is None:
            ring = self._rings[service] = [_Second() for _ in range(self.window_seconds)]
        second = ring[now % self.window_seconds]
        if second.at != now:
            second.restart(now)
        second.requests += 1
        second.errors += error
        if latency is not None:
            second.latency[latency_bucket(latency)] += 1

    def summary(self) -> list[types_pb2.ServiceTraffic]:
        """Each service's traffic over the window, by name; services with none in
        it are left out (and forgotten)."""
        now = self._clock()
        newest = int(now)
        oldest = newest - self.window_seconds + 1
        covered = min(self.window_seconds, int(now - self._started) + 1)
        found: list[types_pb2.ServiceTraffic] = []
        for service in sorted(self._rings):
            seconds = [s for s in self._rings[service] if oldest <= s.at <= newest]
            requests = sum(s.requests for s in seconds)
            if not requests:
                del self._rings[service]
                continue
            latency = [sum(column) for column in zip(*(s.latency for s in seconds), strict=True)]
            while latency and not latency[-1]:
                latency.pop()
            found.append(
                types_pb2.ServiceTraffic(
                    service=service,
                    window_seconds=covered,
                    requests=requests,
                    errors=sum(s.errors for s in seconds),
                    latency_ms_log2=latency,
                )
            )
        return found
