"""Where a request for a model goes: the ready replicas the cluster gossips, and the
choice among them.

Pure: built from the nodes' NodeInfos (each node gossips its replicas' endpoints and
whether each is ready, node/agent/replicas.py), asked with the requests in flight
from this router. A request goes to the ready replica of its model with the fewest
requests in flight here (least outstanding requests); on a tie, one on this node
(no network hop); among replicas still tied, each in turn (``turn``: a count the
router keeps), so that requests one after another spread evenly.

A replica this router could not reach a moment ago (``set_aside``: its host gone,
say, before membership has declared the node dead) comes after every other one,
whatever its load: requests go to it only when no other replica is left, so one
dead machine does not cost every request the connect timeout.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from yarl import URL

from murmur.node.config import host_of
from murmur.v1 import types_pb2

DOWN_STATES = frozenset({types_pb2.NODE_STATE_DEAD, types_pb2.NODE_STATE_LEFT})


@dataclass(frozen=True, slots=True)
class Route:
    """One replica, where a router reaches it."""

    service: str
    job_id: str
    node: str
    host: str
    port: int
    ready: bool
    models: frozenset[str]

    @property
    def key(self) -> str:
        """Identifies the replica's run here (its job, which has one run at a time)."""
        return self.job_id

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


class RoutingTable:
    """The cluster's replicas, as gossip says now.

    Args:
        nodes: every node's NodeInfo.
        local: this node's name.
    """

    def __init__(self, nodes: Iterable[types_pb2.NodeInfo], local: str) -> None:
        self.local = local
        self.routes: tuple[Route, ...] = tuple(
            Route(
                service=endpoint.service,
                job_id=endpoint.job_id,
                node=info.name,
                host=host_of(info.address),
                port=endpoint.port,
                ready=endpoint.ready,
                models=frozenset(endpoint.models),
            )
            for info in nodes
            if info.state not in DOWN_STATES
            for endpoint in info.endpoints
        )
        self._ready: dict[str, tuple[Route, ...]] = _ready_by_model(self.routes)
        """Each model's ready replicas in the order ties are taken (node, job): a
        table serves thousands of requests (proxy.py reuses it), so ``choose`` reads
        this rather than searching every route per request."""
        self._urls: dict[tuple[str, int, str], URL] = {}
        """Where a replica answers a path (``url_for``), parsed once per table."""

    def models(self) -> list[str]:
        """Every name a ready replica answers to, sorted (``/v1/models``)."""
        return sorted({name for route in self.routes if route.ready for name in route.models})

    def candidates(self, model: str, *, excluded: Collection[str] = ()) -> list[Route]:
        """The ready replicas serving ``model``, but the ``excluded`` keys."""
        return [
            route
            for route in self.routes
            if route.ready and model in route.models and route.key not in excluded
        ]

    def choose(
        self,
        model: str,
        in_flight: Mapping[str, int],
        *,
        turn: int = 0,
        excluded: Collection[str] = (),
        set_aside: Collection[str] = (),
    ) -> Route | None:
        """The replica a request for ``model`` goes to (see the module docstring);
        None when no ready replica serves it."""
        found = self._ready.get(model, ())
        if len(found) == 1 and not excluded:  # one replica (most services): no ranking
            return found[0]
        best: tuple[bool, int, bool] | None = None
        tied: list[Route] = []
        for route in found:  # in (node, job) order, which ``tied`` keeps
            key = route.job_id
            if key in excluded:
                continue
            rank = (key in set_aside, in_flight.get(key, 0), route.node != self.local)
            if best is None or rank < best:
                best, tied = rank, [route]
            elif rank == best:
                tied.append(route)
        return tied[turn % len(tied)] if tied else None

    def url_for(self, route: Route, path: str) -> URL:
        """Where ``route`` answers ``path`` (one of the router's few paths: the
        cache is as bounded as the table)."""
        where = (route.host, route.port, path)
        url = self._urls.get(where)
        if url is None:
            url = self._urls[where] = URL(route.url + path)
        return url

    def service_of(self, model: str) -> str | None:
        """The service whose replicas answer to ``model``, ready or not (what a
        request for it counts toward); None for an unknown model."""
        return min((route.service for route in self.routes if model in route.models), default=None)

    def why_none(self, model: str) -> tuple[int, str]:
        """Why no replica takes ``model``: (404, unknown model) or (503, its replicas
        are not ready)."""
        known = [route for route in self.routes if model in route.models]
        if not known:
            return 404, f"The model {model!r} does not exist: no service serves it"
        return 503, (
            f"The model {model!r} has no ready replica ({len(known)} starting or failing "
            "their readiness probe)"
        )


def _ready_by_model(routes: Iterable[Route]) -> dict[str, tuple[Route, ...]]:
    """Each model's ready routes, sorted by (node, job): how ties are taken in turn."""
    found: dict[str, list[Route]] = {}
    for route in routes:
        if route.ready:
            for model in route.models:
                found.setdefault(model, []).append(route)
    return {
        model: tuple(sorted(ready, key=lambda route: (route.node, route.job_id)))
        for model, ready in found.items()
    }
