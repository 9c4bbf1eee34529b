"""`murmur job ...` and `murmur dataset ...` end to end, in subprocesses, against a real node."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.support.nodes import Lab, NodeProcess


def wait_state(lab: Lab, node: NodeProcess, job_id: str, wanted: set[str]) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        shown = json.loads(
            lab.murmur("job", "show", job_id, "--json", "--node", node.address).stdout
        )
        if shown["state"] in wanted:
            return shown  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)


def test_submit_prints_only_the_id_and_logs_show_the_output(lab: Lab, ca_node: NodeProcess) -> None:
    submitted = lab.murmur(
        "job", "submit", "--runtime", "process", "--gpus", "2", "--name", "hello",
        "--node", ca_node.address, "--", "sh", "-c", "echo hi from $MURMUR_JOB_ID",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert len(job_id.split()) == 1
    shown = wait_state(lab, ca_node, job_id, {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"})
    assert shown["state"] == "JOB_STATE_SUCCEEDED"
    logs = lab.murmur("job", "logs", job_id, "--node", ca_node.address)
    assert f"hi from {job_id}" in logs.stdout.splitlines()
    followed = lab.murmur("job", "logs", job_id, "-f", "-t", "--node", ca_node.address)
    assert followed.returncode == 0
    listed = json.loads(lab.murmur("job", "list", "--json", "--node", ca_node.address).stdout)
    assert [job["id"] for job in listed["jobs"]] == [job_id]
    table = lab.murmur("job", "list", "--node", ca_node.address).stdout
    assert "hello" in table
    assert "succeeded" in table


def test_logs_follow_streams_until_the_run_ends(lab: Lab, ca_node: NodeProcess) -> None:
    job_id = lab.murmur(
        "job", "submit", "--runtime", "process", "--node", ca_node.address,
        "--", "sh", "-c", "echo one; sleep 1; echo two",
    ).stdout.strip()  # fmt: skip
    followed = lab.murmur("job", "logs", job_id, "-f", "--node", ca_node.address, timeout=30)
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    assert lines.index("one") < lines.index("two")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--gpus", "-1"], "--gpus"),
        (["--memory", "lots"], "invalid size 'lots'"),
        (["--time-limit", "forever"], "invalid duration"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(lab: Lab, args: list[str], fragment: str) -> None:
    result = lab.murmur("job", "submit", *args, "--", "true")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert fragment in lines[0]


def test_bad_specs_from_the_node_are_one_line_and_exit_1(lab: Lab, ca_node: NodeProcess) -> None:
    result = lab.murmur(
        "job", "submit", "--image", "has spaces", "--node", ca_node.address, "--", "true"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "murmur: error: image 'has spaces' is not a valid image reference"
    ]
    empty = lab.murmur("job", "submit", "--node", ca_node.address)
    assert empty.returncode == 1
    assert "no command" in empty.stderr


def test_cancel_from_the_cli(lab: Lab, ca_node: NodeProcess) -> None:
    job_id = lab.murmur(
        "job", "submit", "--runtime", "process", "--node", ca_node.address, "--", "sleep", "60"
    ).stdout.strip()
    wait_state(lab, ca_node, job_id, {"JOB_STATE_RUNNING"})
    cancelled = lab.murmur("job", "cancel", job_id, "--reason", "done", "--node", ca_node.address)
    assert cancelled.returncode == 0, cancelled.stderr
    shown = wait_state(lab, ca_node, job_id, {"JOB_STATE_CANCELLED"})
    assert "done" in str(shown["reason"])


def test_datasets_live_under_the_data_roots_and_jobs_get_their_path(
    lab: Lab, ca_node: NodeProcess
) -> None:
    root = ca_node.data_dir / "datasets"
    data = root / "mnist"
    (data / "train").mkdir(parents=True)
    (data / "train" / "a.bin").write_bytes(b"x" * 1000)
    (data / "labels.txt").write_text("0\n1\n")
    added = lab.murmur(
        "dataset", "add", str(data), "--name", "mnist", "--json", "--node", ca_node.address
    )
    assert added.returncode == 0, added.stderr
    dataset = json.loads(added.stdout)
    assert dataset["size_bytes"] == "1004"
    assert dataset["file_count"] == "2"
    assert len(dataset["manifest_sha256"]) == 64
    listed = json.loads(lab.murmur("dataset", "list", "--json", "--node", ca_node.address).stdout)
    assert [d["name"] for d in listed["datasets"]] == ["mnist"]

    job_id = lab.murmur(
        "job", "submit", "--runtime", "process", "--dataset", "mnist", "--node", ca_node.address,
        "--", "sh", "-c", "cat $MURMUR_DATASET_MNIST/labels.txt",
    ).stdout.strip()  # fmt: skip
    wait_state(lab, ca_node, job_id, {"JOB_STATE_SUCCEEDED"})
    logs = lab.murmur("job", "logs", job_id, "--node", ca_node.address).stdout.splitlines()
    assert logs.index("0") + 1 == logs.index("1")


def test_dataset_paths_cannot_escape_the_roots(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    root = ca_node.data_dir / "datasets"
    root.mkdir(exist_ok=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    os.symlink(outside, root / "sneaky")
    for path in (
        str(outside),
        str(root / "sneaky"),
        str(root / ".." / ".." / "secret"),
        "relative",
    ):
        result = lab.murmur("dataset", "add", path, "--name", "x", "--node", ca_node.address)
        assert result.returncode == 1, path
        assert len(result.stderr.strip().splitlines()) == 1
    assert json.loads(
        lab.murmur("dataset", "list", "--json", "--node", ca_node.address).stdout
    ) == {"datasets": []}
    unknown = lab.murmur(
        "job", "submit", "--dataset", "nope", "--runtime", "process", "--node", ca_node.address,
        "--", "true",
    )  # fmt: skip
    assert "unknown dataset 'nope'" in unknown.stderr
