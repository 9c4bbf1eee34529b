"""`murmur top` driven with Pilot against a real node started by the test: every view
and every action, the way a user reaches it with the keyboard."""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from murmur.certs import Role
from murmur.tui.screens.dialogs import ConfirmScreen, HelpScreen
from murmur.tui.screens.job import JobScreen
from murmur.tui.screens.jobs import JobsScreen
from murmur.tui.screens.node import NodeScreen
from murmur.tui.screens.services import ServicesScreen
from murmur.tui.screens.submit import SubmitScreen
from murmur.v1 import types_pb2
from tests.support import openai_server
from tests.support.nodes import Lab, NodeProcess
from tests.tui.conftest import WAIT_SECONDS, top_for, wait_for_text
from tests.tui.screen_text import screen_text

SIZE = (150, 45)
TICKER = "import time\nfor i in range(600):\n    print(f'tick {i}', flush=True); time.sleep(0.1)"


async def wait_for_match(pilot: Pilot[Any], pattern: str) -> str:
    """Waits until `pattern` matches the screen; returns the screen."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not re.search(pattern, text := screen_text(pilot.app)):
        assert time.monotonic() < deadline, f"no {pattern!r} on screen:\n{text}"
        await pilot.pause(0.1)
    return text


def submit_ticker(lab: Lab, node: NodeProcess, *, gpus: int = 0, identity: object = None) -> str:
    result = lab.murmur(
        "job", "submit", "--runtime", "process", "--gpus", str(gpus), "--name", "ticker",
        "--node", node.address, "--", sys.executable, "-c", TICKER,
        identity=identity,  # type: ignore[arg-type]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def job_shown(lab: Lab, node: NodeProcess, job_id: str) -> dict[str, object]:
    shown = lab.murmur("job", "show", job_id, "--json", "--node", node.address)
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


def audit(lab: Lab, node: NodeProcess) -> list[dict[str, str]]:
    shown = lab.murmur("audit", "--json", "--node", node.address)
    assert shown.returncode == 0, shown.stderr
    return list(json.loads(shown.stdout).get("records", []))


async def test_cluster_view_shows_the_node_its_simulated_gpus_and_who_we_are(
    lab: Lab, ca_node: NodeProcess
) -> None:
    app = top_for(lab, ca_node)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        text = await wait_for_text(pilot, "★ node-1", "8xA100 (simulated)", "0/8")
        assert f"attached to node-1 at {ca_node.address}" in text
        assert "as admin (admin)" in text
        assert "alive" in text
        assert "GPUs 0/8 in use (simulated)" in text


async def test_node_view_shows_which_job_and_user_hold_each_gpu(
    lab: Lab, ca_node: NodeProcess
) -> None:
    job_id = submit_ticker(lab, ca_node, gpus=2)
    app = top_for(lab, ca_node)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for_text(pilot, "★ node-1", "2/8")
        await pilot.press("enter")
        text = await wait_for_text(pilot, f"{job_id} · admin · ticker", "node node-1")
        assert isinstance(app.screen, NodeScreen)
        assert text.count(f"{job_id} · admin") == 2
        assert text.count("free") == 6
        assert "no telemetry: simulated GPUs report none" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, NodeScreen)


async def test_submit_form_then_live_log_with_follow_wrap_timestamps_then_cancel(
    lab: Lab, ca_node: NodeProcess
) -> None:
    app = top_for(lab, ca_node)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for_text(pilot, "★ node-1")
        await pilot.press("colon", *"jobs", "enter")
        await wait_for_text(pilot, "0 of 0 shown")
        assert isinstance(app.screen, JobsScreen)
        await pilot.press("n")
        assert isinstance(app.screen, SubmitScreen)
        app.screen.query_one("#form-name").value = "ticker"  # type: ignore[attr-defined]
        command = f"{sys.executable} -c {shlex.quote(TICKER)}"
        app.screen.query_one("#form-command").value = command  # type: ignore[attr-defined]
        app.screen.query_one("#form-gpus").value = "1"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        text = await wait_for_text(pilot, "submitted job")
        job_id = re.search(r"submitted job (\S+)", text).group(1)  # type: ignore[union-attr]
        await wait_for_text(pilot, job_id, "running", "ticker")
        await pilot.press("enter")
        assert isinstance(app.screen, JobScreen)
        await wait_for_text(pilot, f"job {job_id}", "job.state", "python")
        await pilot.press("l")
        await wait_for_text(pilot, "log: live", "follow")
        # A log line, whichever: in follow mode only the last screenful of ticks shows.
        await wait_for_match(pilot, r"tick \d+")
        await pilot.press("t")
        text = await wait_for_text(pilot, "timestamps")
        assert re.search(r"\d\d:\d\d:\d\d\.\d\d\d tick \d", text), text
        await pilot.press("w", "f")
        text = await wait_for_text(pilot, "log (wrap, timestamps)")
        await pilot.press("ctrl+k")
        assert isinstance(app.screen, ConfirmScreen)
        await wait_for_text(pilot, f"Cancel job {job_id}?", "ticker of admin, running")
        await pilot.press("y")
        await wait_for_text(pilot, f"cancel of job {job_id} accepted")
        await wait_for_text(pilot, "state      cancelled", "cancelled by admin")
    shown = job_shown(lab, ca_node, job_id)
    assert shown["state"] == "JOB_STATE_CANCELLED"


async def test_jobs_filter_by_user_and_state_and_sort(lab: Lab, ca_node: NodeProcess) -> None:
    bob = lab.issue_identity("bob", Role.MEMBER)
    mine = submit_ticker(lab, ca_node)
    bobs = submit_ticker(lab, ca_node, identity=bob)
    waiting = lab.murmur(
        "job", "submit", "--runtime", "process", "--gpus", "9", "--name", "too-big",
        "--node", ca_node.address, "--", "true", identity=bob,
    ).stdout.strip()  # fmt: skip
    app = top_for(lab, ca_node)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("colon", *"j", "enter")
        await wait_for_text(pilot, mine, bobs, waiting, "3 of 3 shown")
        await pilot.press("slash", *"user:bob")
        text = await wait_for_text(pilot, "2 of 3 shown", "filter /user:bob")
        assert mine not in text
        await pilot.press("enter")
        await pilot.press("slash", "ctrl+u", *"user:bob state:pend", "enter")
        text = await wait_for_text(pilot, "1 of 3 shown")
        assert waiting in text
        assert "pending" in text
        await pilot.press("escape")
        await wait_for_text(pilot, "3 of 3 shown")
        table = app.screen.table  # type: ignore[attr-defined]
        before = table.model.visible()
        await pilot.press("s")  # AGE → REASON
        await pilot.press("S")
        assert table.model.sort_column == 8
        assert table.model.sort_reverse
        assert table.model.visible() != before or len(set(before)) == 3


async def test_datasets_view_lists_what_lives_where(lab: Lab, ca_node: NodeProcess) -> None:
    data = ca_node.data_dir / "datasets" / "mnist"
    data.mkdir(parents=True)
    (data / "train.bin").write_bytes(b"x" * 2048)
    added = lab.murmur("dataset", "add", str(data), "--name", "mnist", "--node", ca_node.address)
    assert added.returncode == 0, added.stderr
    app = top_for(lab, ca_node)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("colon", *"datasets", "enter")
        text = await wait_for_text(pilot, "mnist", "2.0 KiB", "1 of 1 shown")
        assert "node-1" in text
        assert "/node-1/datasets/mnist" in text


async def test_services_view_shows_a_replica_become_ready(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    loaded = tmp_path / "loaded"  # the replica answers its probe once this exists
    created = lab.murmur(
        "service", "create", "toy", "--model", "toy-llm", "--alias", "toy", "--replicas", "1",
        "--runtime", "process", "--ready-period", "200ms", "--node", ca_node.address, "--shell",
        "--", f"exec {sys.executable} -S {openai_server.__file__} --model toy-llm "
        f"--ready-when {shlex.quote(str(loaded))}",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    app = top_for(lab, ca_node)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for_text(pilot, "★ node-1")
        await pilot.press("colon", *"svc", "enter")
        assert isinstance(app.screen, ServicesScreen)
        text = await wait_for_match(pilot, r"running\s+node-1\s+\d+\s+no")
        # No request yet: no rate, no latency.
        assert re.search(r"toy\s+toy-llm\s+0/1\s+0\.00\s+0\.00\s+—\s+—\s+admin\s+process", text), (
            text
        )
        assert (
            "replicas of toy  0/1 ready  0.00 req/s, 0.00 err/s, p50 —, p99 —  models toy-llm"
            in text
        )
        loaded.touch()
        text = await wait_for_match(pilot, r"running\s+node-1\s+\d+\s+yes")
        assert "replicas of toy  1/1 ready" in text
    shown = lab.murmur("service", "show", "toy", "--json", "--node", ca_node.address)
    replica = json.loads(shown.stdout)["replicas"][0]
    assert re.search(rf"{replica['job_id']}\s+running\s+node-1\s+{replica['port']}\s+yes", text)


async def test_help_and_command_errors_are_shown_not_raised(lab: Lab, ca_node: NodeProcess) -> None:
    app = top_for(lab, ca_node)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for_text(pilot, "★ node-1")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await wait_for_text(pilot, "murmur top: keys", "ctrl+k")
        await pilot.press("escape")
        await pilot.press("colon", *"bogus", "enter")
        await wait_for_text(pilot, "`bogus` matches none")
        await pilot.press("colon", *"node node-9", "enter")
        await wait_for_text(pilot, "No node named node-9 is known")


async def test_admin_drain_asks_first_and_reports_the_nodes_answer(
    lab: Lab, ca_node: NodeProcess
) -> None:
    app = top_for(lab, ca_node)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for_text(pilot, "★ node-1")
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        text = await wait_for_text(pilot, "Drain node node-1?")
        assert "needs the admin role" not in text
        await pilot.press("n")
        assert not any(r["action"] == "DrainNode" for r in audit(lab, ca_node))
        await pilot.press("d", "y")
        # Until DrainNode is served the node answers UNIMPLEMENTED; either answer is a
        # notification, never a traceback.
        text = await wait_for_text(pilot, "drain node node-1")
        assert "UNIMPLEMENTED" in text or "drain node node-1 accepted: draining" in text
    records = [r for r in audit(lab, ca_node) if r["action"] == "DrainNode"]
    assert [r["user"] for r in records] == ["admin"]


async def test_member_drain_is_refused_by_the_node_and_audited(
    lab: Lab, ca_node: NodeProcess
) -> None:
    bob = lab.issue_identity("bob", Role.MEMBER)
    app = top_for(lab, ca_node, identity=bob)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for_text(pilot, "★ node-1", "as bob (member)")
        await pilot.press("d")
        await wait_for_text(pilot, "needs the admin role and you are member")
        await pilot.press("y")
        await wait_for_text(pilot, "drain node node-1 refused by the node", "PERMISSION_DENIED")
    records = [r for r in audit(lab, ca_node) if r["action"] == "DrainNode"]
    assert [(r["user"], r["result"]) for r in records] == [("bob", "PERMISSION_DENIED")]


async def test_viewer_cancel_and_submit_are_refused_by_the_node(
    lab: Lab, ca_node: NodeProcess
) -> None:
    job_id = submit_ticker(lab, ca_node)
    viewer = lab.issue_identity("vera", Role.VIEWER)
    app = top_for(lab, ca_node, identity=viewer)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("colon", *"jobs", "enter")
        await wait_for_text(pilot, job_id, "as vera (viewer)")
        await pilot.press("ctrl+k")
        await wait_for_text(pilot, "needs the member role and you are viewer")
        await pilot.press("y")
        await wait_for_text(pilot, f"cancel job {job_id} refused by the node")
        await pilot.press("n")
        assert isinstance(app.screen, SubmitScreen)
        app.screen.query_one("#form-command").value = "true"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_for_text(pilot, "submit job refused by the node")
    assert app.state.jobs[job_id].state != types_pb2.JOB_STATE_CANCELLED
    shown = job_shown(lab, ca_node, job_id)
    assert shown["state"] == "JOB_STATE_RUNNING"
