"""What a StartRun says of a gang's rank becomes its place in the gang, or a clear
refusal."""

from __future__ import annotations

import pytest

from murmur.node.agent.runtimes.base import GangPlace
from murmur.node.api.services.runs import gang_place_of
from murmur.node.errors import InvalidArgumentError
from murmur.v1 import node_pb2, types_pb2


def request(nodes: int, gang: node_pb2.GangRank | None, gpus: int = 2) -> node_pb2.StartRunRequest:
    spec = types_pb2.JobSpec(nodes=nodes, gpus=types_pb2.GpuRequest(count=gpus))
    return node_pb2.StartRunRequest(job_id="j", run_id="r", spec=spec, gang=gang)


def test_a_rank_of_a_gang_gets_its_place_and_a_single_run_none() -> None:
    rank = node_pb2.GangRank(node_rank=1, master_addr="10.0.0.5", master_port=29500)
    assert gang_place_of(request(3, rank)) == GangPlace(
        node_rank=1, nodes=3, local_world_size=2, master_addr="10.0.0.5", master_port=29500
    )
    assert gang_place_of(request(2, rank, gpus=0)).local_world_size == 1  # type: ignore[union-attr]
    assert gang_place_of(request(1, None)) is None


@pytest.mark.parametrize(
    ("nodes", "gang", "says"),
    [
        (2, None, "rendezvous"),
        (2, node_pb2.GangRank(node_rank=0, master_addr="", master_port=29500), "rendezvous"),
        (2, node_pb2.GangRank(node_rank=0, master_addr="h", master_port=0), "rendezvous"),
        (2, node_pb2.GangRank(node_rank=0, master_addr="h", master_port=70000), "rendezvous"),
        (2, node_pb2.GangRank(node_rank=2, master_addr="h", master_port=29500), "node rank 2"),
    ],
)
def test_a_rank_without_a_usable_rendezvous_is_refused(
    nodes: int, gang: node_pb2.GangRank | None, says: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=says):
        gang_place_of(request(nodes, gang))
