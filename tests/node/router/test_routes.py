"""Choosing a replica: least requests in flight, this node's on a tie, then each in
turn; unknown models and models with no ready replica are told apart."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from murmur.node.config import host_of
from murmur.node.router.routes import Route, RoutingTable
from murmur.v1 import types_pb2


def node(
    name: str, *replicas: tuple[str, bool], state: int = types_pb2.NODE_STATE_ALIVE
) -> types_pb2.NodeInfo:
    info = types_pb2.NodeInfo(name=name, address=f"10.0.0.{name[-1]}:7000", state=state)  # type: ignore[arg-type]
    for job_id, ready in replicas:
        info.endpoints.add(
            service="llm", job_id=job_id, port=9000, ready=ready, models=["m", "m:sql"]
        )
    return info


def test_the_least_busy_replica_wins_then_the_local_one_then_each_in_turn() -> None:
    table = RoutingTable([node("n1", ("a", True)), node("n2", ("b", True), ("c", True))], "n2")
    assert table.choose("m", {"b": 1, "c": 1}).job_id == "a"  # type: ignore[union-attr]
    assert table.choose("m", {"b": 1}).job_id == "c"  # type: ignore[union-attr]
    picks = {table.choose("m", {}, turn=turn).job_id for turn in range(4)}  # type: ignore[union-attr]
    assert picks == {"b", "c"}  # local ones, in turn
    remote = RoutingTable([node("n1", ("a", True)), node("n2", ("b", True))], "n9")
    assert [remote.choose("m", {}, turn=t).job_id for t in range(4)] == ["a", "b", "a", "b"]  # type: ignore[union-attr]
    route = table.choose("m:sql", {}, excluded={"b", "c"})
    assert route is not None
    assert route.url == "http://10.0.0.1:9000"


def test_a_replica_set_aside_comes_last_whatever_its_load_but_is_not_dropped() -> None:
    table = RoutingTable([node("n1", ("a", True)), node("n2", ("b", True))], "n1")
    # a is local and idle, b is busy: a would win, but a just failed.
    assert table.choose("m", {"b": 5}, set_aside={"a"}).job_id == "b"  # type: ignore[union-attr]
    # With nothing else left, a replica set aside is still tried.
    assert table.choose("m", {}, excluded={"b"}, set_aside={"a"}).job_id == "a"  # type: ignore[union-attr]


def test_replicas_not_ready_or_on_dead_nodes_get_nothing() -> None:
    table = RoutingTable(
        [node("n1", ("a", False)), node("n2", ("b", True), state=types_pb2.NODE_STATE_DEAD)], "n1"
    )
    assert table.choose("m", {}) is None
    assert table.models() == []
    assert table.why_none("m")[0] == 503
    assert table.why_none("other")[0] == 404


@given(st.lists(st.tuples(st.sampled_from("abcdef"), st.booleans(), st.integers(0, 3)), max_size=8))
def test_the_choice_is_always_a_ready_replica_with_the_fewest_in_flight(
    replicas: list[tuple[str, bool, int]],
) -> None:
    unique = {job: (ready, load) for job, ready, load in replicas}
    table = RoutingTable([node("n1", *((job, ready) for job, (ready, _) in unique.items()))], "n1")
    in_flight = {job: load for job, (_, load) in unique.items()}
    chosen = table.choose("m", in_flight)
    ready = [job for job, (is_ready, _) in unique.items() if is_ready]
    if not ready:
        assert chosen is None
        return
    assert chosen is not None
    assert chosen.job_id in ready
    assert in_flight[chosen.job_id] == min(in_flight[job] for job in ready)


def test_the_host_of_an_address() -> None:
    assert host_of("10.0.0.5:7000") == "10.0.0.5"
    assert host_of("[fd00::1]:7000") == "fd00::1"


def reference_choice(
    table: RoutingTable,
    model: str,
    in_flight: dict[str, int],
    turn: int,
    excluded: set[str],
    set_aside: set[str],
) -> str | None:
    """The choice as the module docstring words it, searched the slow way."""
    found = table.candidates(model, excluded=excluded)
    if not found:
        return None

    def rank(route: Route) -> tuple[bool, int, bool]:
        key = route.job_id
        return key in set_aside, in_flight.get(key, 0), route.node != table.local

    best = min(map(rank, found))
    tied = sorted((r for r in found if rank(r) == best), key=lambda r: (r.node, r.job_id))
    return tied[turn % len(tied)].job_id


@given(
    st.lists(
        st.tuples(st.sampled_from(["n1", "n2", "n3"]), st.booleans(), st.integers(0, 2)),
        max_size=8,
    ),
    st.integers(0, 20),
    st.sets(st.integers(0, 7)),
    st.sets(st.integers(0, 7)),
)
def test_the_choice_from_the_precomputed_index_is_the_one_the_rules_make(
    replicas: list[tuple[str, bool, int]], turn: int, excluded: set[int], set_aside: set[int]
) -> None:
    """``choose`` reads each model's ready replicas from an index built with the
    table (the per-request search is gone); it picks exactly what the rules pick."""
    infos = {name: node(name) for name in ("n1", "n2", "n3")}
    in_flight: dict[str, int] = {}
    for index, (name, ready, load) in enumerate(replicas):
        infos[name].endpoints.add(
            service="llm", job_id=f"j{index}", port=9000, ready=ready, models=["m"]
        )
        in_flight[f"j{index}"] = load
    table = RoutingTable(list(infos.values()), "n2")
    out = {f"j{index}" for index in excluded}
    aside = {f"j{index}" for index in set_aside}
    chosen = table.choose("m", in_flight, turn=turn, excluded=out, set_aside=aside)
    expected = reference_choice(table, "m", in_flight, turn, out, aside)
    assert (chosen.job_id if chosen is not None else None) == expected


def test_a_replicas_url_for_a_path_is_its_address_and_the_path() -> None:
    info = types_pb2.NodeInfo(name="n6", address="[fd00::6]:7000", state=types_pb2.NODE_STATE_ALIVE)
    info.endpoints.add(service="llm", job_id="a", port=9000, ready=True, models=["m"])
    table = RoutingTable([info], "n6")
    route = table.choose("m", {})
    assert route is not None
    url = table.url_for(route, "/v1/embeddings")
    assert str(url) == "http://[fd00::6]:9000/v1/embeddings"
    assert table.url_for(route, "/v1/embeddings") is url  # parsed once per table
