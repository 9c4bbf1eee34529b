"""Running a fault harness (``python -m tests.chaos.run``, ``python -m tests.soak.run``)
from a test: as a process of its own, since it re-executes itself inside a network
namespace hub when partitions are possible, which a test process cannot do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import netns_unavailable

REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FaultRun:
    report: dict[str, Any]
    output: str
    """What the harness printed, for assertion messages."""
    returncode: int
    partitions_possible: bool
    """Whether this machine can make network namespaces (so the run had partitions)."""


def run_fault_harness(
    module: str, args: list[str], *, report_path: Path, timeout: float, what: str
) -> FaultRun:
    """Runs ``python -m module *args --report report_path``: with ``--require-netns`` on
    CI (which runs as root: the partitions must run there), ``--no-netns`` where no
    namespace can be made. Fails the test if it does not end within ``timeout``
    seconds (its process group is sent SIGTERM) or leaves no report."""
    command = [sys.executable, "-m", module, *args, "--report", str(report_path)]
    why_not = netns_unavailable()
    if os.environ.get("CI") == "true":
        command.append("--require-netns")
    elif why_not is not None:
        command.append("--no-netns")
    process = subprocess.Popen(
        command,
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        pytest.fail(f"the {what} did not end in {timeout:g} s:\n{output}")
    assert report_path.exists(), output
    return FaultRun(
        report=json.loads(report_path.read_text()),
        output=output,
        returncode=process.returncode,
        partitions_possible=why_not is None,
    )
