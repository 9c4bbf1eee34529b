"""GossipConfig: memberlist's defaults, the timeout formulas, and validation."""

from __future__ import annotations

import math

import pytest

from murmur.node.gossip import GossipConfig, GossipConfigError


def test_defaults_are_memberlist_lan_with_a_short_confirmed_suspicion() -> None:
    config = GossipConfig()
    assert (config.probe_interval, config.probe_timeout, config.indirect_checks) == (1.0, 0.5, 3)
    assert (config.gossip_interval, config.gossip_nodes) == (0.2, 3)
    assert (config.suspicion_mult, config.suspicion_max_timeout_mult) == (4, 6)
    assert (config.suspicion_min_mult, config.confirmation_probes) == (0.5, 8)
    assert (config.retransmit_mult, config.push_pull_interval) == (4, 30.0)
    assert (config.awareness_max_multiplier, config.dead_node_reclaim) == (8, 30.0)


@pytest.mark.parametrize(
    ("n", "scale"),
    [(1, 1.0), (3, 1.0), (10, 1.0), (100, 2.0), (1000, 3.0), (32, math.log10(32))],
)
def test_suspicion_bounds_scale_with_log10_of_cluster_size(n: int, scale: float) -> None:
    config = GossipConfig()
    assert config.suspicion_min_timeout(n) == pytest.approx(0.5 * scale)
    # The upper bound (nobody confirms) is memberlist's: 6 x 4 x scale probe intervals.
    assert config.suspicion_max_timeout(n) == pytest.approx(24 * scale)


def test_memberlists_lower_bound_is_one_setting_away() -> None:
    memberlist = GossipConfig(suspicion_min_mult=4)
    assert memberlist.suspicion_min_timeout(100) == pytest.approx(8.0)
    assert memberlist.suspicion_max_timeout(100) == pytest.approx(48.0)


def test_suspicion_timeout_follows_probe_interval() -> None:
    config = GossipConfig(probe_interval=2.0)
    assert config.suspicion_min_timeout(100) == pytest.approx(2.0)
    assert config.suspicion_max_timeout(100) == pytest.approx(96.0)


@pytest.mark.parametrize(
    ("n", "chance"), [(2, 0.0), (3, 1.0), (10, 1.0), (12, 0.8), (34, 0.25), (1002, 0.008)]
)
def test_confirmation_probes_are_shared_among_the_members_that_can_probe(
    n: int, chance: float
) -> None:
    assert GossipConfig().confirmation_probe_chance(n) == pytest.approx(chance)
    assert GossipConfig(confirmation_probes=0).confirmation_probe_chance(n) == 0.0


@pytest.mark.parametrize(("n", "k", "memberlist_k"), [(2, 0, 0), (3, 1, 0), (4, 2, 2), (50, 2, 2)])
def test_expected_confirmations_need_enough_other_members(
    n: int, k: int, memberlist_k: int
) -> None:
    # With confirmation probes a 3-node cluster's third member does probe, so its
    # confirmation is required; memberlist expects none there.
    assert GossipConfig().expected_confirmations(n) == k
    assert GossipConfig(confirmation_probes=0).expected_confirmations(n) == memberlist_k


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
        ({"suspicion_min_mult": 0.0}, "suspicion_min_mult"),
    ],
)
def test_out_of_range_fields_are_named(changes: dict[str, float], field: str) -> None:
    with pytest.raises(GossipConfigError, match=field):
        GossipConfig(**changes)  # type: ignore[arg-type]
