"""ElectionConfig validation."""

from __future__ import annotations

import pytest

from murmur.node.control.raft import ElectionConfig, ElectionConfigError


def test_defaults_are_valid_and_survive_a_lost_heartbeat() -> None:
    config = ElectionConfig()
    # A follower that misses one heartbeat, and a leader that misses one round of
    # answers, wait for the next one (issue 11 made heartbeats 0.2 s: idle cost).
    assert config.election_timeout_min > 2 * config.heartbeat_interval
    assert config.lease_timeout > 2 * config.heartbeat_interval
    assert config.lease_timeout <= config.election_timeout_min


@pytest.mark.parametrize(
    "overrides",
    [
        {"heartbeat_interval": 0.0},
        {"lease_timeout": -1.0},
        {"election_timeout_min": 0.8, "election_timeout_max": 0.8},
        {"election_timeout_min": 0.9, "election_timeout_max": 0.8},
        {"heartbeat_interval": 0.4},
        {"lease_timeout": 0.15},
    ],
)
def test_rejects_out_of_range(overrides: dict[str, float]) -> None:
    with pytest.raises(ElectionConfigError):
        ElectionConfig(**overrides)


@pytest.mark.parametrize(("voters", "quorum"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
def test_quorum(voters: int, quorum: int) -> None:
    assert ElectionConfig().quorum(voters) == quorum
