"""ElectionConfig validation."""

from __future__ import annotations

import pytest

from node.election import ElectionConfig, ElectionConfigError


def test_defaults_are_valid_and_leave_four_heartbeats_per_timeout() -> None:
    config = ElectionConfig()
    assert config.election_timeout_min >= 4 * config.heartbeat_interval
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
