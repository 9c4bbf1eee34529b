"""A short run of the RPC fuzzer (tests/fuzz/rpc.py) against a real node: generated,
mutated and garbage requests to every ClusterService and NodeService method, as an
admin, a member, a viewer and a node. ``make fuzz`` runs the long one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.rpc import contract_methods, fuzz, running_target

CASES = 350
MAX_SECONDS = 40.0
"""Enough for a few cases per method on a loaded 2-core machine."""


@pytest.mark.slow
def test_no_rpc_crashes_on_hostile_requests_and_the_node_keeps_answering(
    tmp_path: Path,
) -> None:
    with running_target(tmp_path) as target:
        tally = fuzz(target, cases=CASES, seed=20, max_seconds=MAX_SECONDS)
    assert tally.passed, tally.report()
    assert tally.cases >= 150, f"only {tally.cases} cases ran in {MAX_SECONDS} s"
    assert len(tally.codes) >= len(contract_methods()) * 3 // 4, tally.report()
