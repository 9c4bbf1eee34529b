"""GossipConfig: memberlist's defaults, the timeout formulas, and validation."""

from __future__ import annotations

import math

import pytest

from node.gossip import GossipConfig, GossipConfigError


def test_defaults_are_memberlist_lan() -> None:
    config = GossipConfig()
    assert (config.probe_interval, config.probe_timeout, config.indirect_checks) == (1.0, 0.5, 3)
    assert (config.gossip_interval, config.gossip_nodes) == (0.2, 3)
    assert (config.suspicion_mult, config.suspicion_max_timeout_mult) == (4, 6)
    assert (config.retransmit_mult, config.push_pull_interval) == (4, 30.0)
    assert (config.awareness_max_multiplier, config.dead_node_reclaim) == (8, 30.0)


@pytest.mark.parametrize(
    ("n", "expected_min"),
    [(1, 4.0), (3, 4.0), (10, 4.0), (100, 8.0), (1000, 12.0), (32, 4 * math.log10(32))],
)
def test_suspicion_min_timeout_scales_with_log10_of_cluster_size(
    n: int, expected_min: float
) -> None:
    config = GossipConfig()
    assert config.suspicion_min_timeout(n) == pytest.approx(expected_min)
    assert config.suspicion_max_timeout(n) == pytest.approx(6 * expected_min)


def test_suspicion_timeout_follows_probe_interval() -> None:
    assert GossipConfig(probe_interval=2.0).suspicion_min_timeout(100) == pytest.approx(16.0)


@pytest.mark.parametrize(("n", "k"), [(2, 0), (3, 0), (4, 2), (50, 2)])
def test_expected_confirmations_need_enough_other_members(n: int, k: int) -> None:
    assert GossipConfig().expected_confirmations(n) == k


@pytest.mark.parametrize(("n", "limit"), [(1, 4), (9, 4), (10, 8), (99, 8), (100, 12), (1000, 16)])
def test_retransmit_limit(n: int, limit: int) -> None:
    assert GossipConfig().retransmit_limit(n) == limit


@pytest.mark.parametrize(
    ("n", "interval"), [(5, 30.0), (32, 30.0), (33, 60.0), (64, 60.0), (65, 90.0)]
)
def test_push_pull_interval_stretches_above_32_members(n: int, interval: float) -> None:
    assert GossipConfig().scaled_push_pull_interval(n) == interval


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"probe_interval": 0.0}, "probe_interval"),
        ({"gossip_nodes": 0}, "gossip_nodes"),
        ({"probe_timeout": -1.0}, "probe_timeout"),
        ({"probe_timeout": 1.0, "probe_interval": 1.0}, "probe_timeout"),
        ({"awareness_max_multiplier": 0}, "awareness_max_multiplier"),
    ],
)
def test_out_of_range_fields_are_named(changes: dict[str, float], field: str) -> None:
    with pytest.raises(GossipConfigError, match=field):
        GossipConfig(**changes)  # type: ignore[arg-type]
