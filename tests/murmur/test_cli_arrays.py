"""Arrays, sweeps, dependencies and batches end to end, through the CLI, on a real
node (issue 17's "done when"): a 100-task array with %4 never runs more than 4 tasks
at once and every task sees its index; a 2x2 sweep runs 4 tasks with the right
environment and labels; B --after A:ok starts only once A succeeded, and ends with
a reason when A fails; C --after B:any runs either way; a cycle is refused; a
cancelled array ends all its tasks.

One node with 8 simulated GPUs serves the module; tasks are processes that end in
a tenth of a second.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.nodes import Lab, NodeProcess, create_lab

TASK = """\
import json, os, sys, time
results = sys.argv[1]
running = os.path.join(results, "running")
index = os.environ["MURMUR_ARRAY_TASK_ID"]
marker = os.path.join(running, index)
open(marker, "w").close()
together = len(os.listdir(running))  # the tasks running now, this one included
time.sleep(float(sys.argv[2]))
os.remove(marker)
seen = {k: v for k, v in os.environ.items() if k.startswith(("MURMUR_", "CUDA_VISIBLE"))}
with open(os.path.join(results, index + ".json"), "w") as out:
    json.dump({"together": together, **seen}, out)
"""
"""One task: notes how many tasks run beside it and what its environment says."""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, NodeProcess]]:
    lab = create_lab(tmp_path_factory.mktemp("arrays"))
    try:
        yield (
            lab,
            lab.start_node(
                "node-1",
                data_dir=lab.first_data_dir,
                extra_args=["--simulate-gpus", "8xA100-80GB"],
            ),
        )
    finally:
        lab.stop_all()


class Cli:
    def __init__(self, lab: Lab, node: NodeProcess) -> None:
        self.lab, self.node = lab, node

    def __call__(self, *args: str) -> Any:
        return self.lab.murmur(*args[:2], "--node", self.node.address, *args[2:])

    def submit(self, *flags: str, command: tuple[str, ...]) -> str:
        result = self("job", "submit", "--runtime", "process", *flags, "--", *command)
        assert result.returncode == 0, result.stderr
        job_id: str = result.stdout.strip()
        return job_id

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def cli(node: tuple[Lab, NodeProcess]) -> Cli:
    return Cli(*node)


def _task_results(results: Path) -> dict[int, dict[str, str]]:
    return {int(path.stem): json.loads(path.read_text()) for path in results.glob("*.json")}


def _results_dir(tmp_path: Path, name: str) -> Path:
    results = tmp_path / name
    (results / "running").mkdir(parents=True)
    return results


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_arrays_sweeps_and_dependencies_end_to_end(cli: Cli, tmp_path: Path) -> None:
    script = tmp_path / "task.py"
    script.write_text(TASK)
    task = (sys.executable, "-S", str(script))
    array_results = _results_dir(tmp_path, "array")
    sweep_results = _results_dir(tmp_path, "sweep")

    array = cli.submit(
        "--array", "0-99%4", "--gpus", "1", command=(*task, str(array_results), "0.05")
    )
    sweep = cli.submit(
        "--sweep", "lr=1e-3,3e-4", "--sweep", "batch=32,64",
        command=(*task, str(sweep_results), "0"),
    )  # fmt: skip
    first = cli.submit(command=("sh", "-c", "sleep 0.5"))
    after_first = cli.submit("--after", f"{first}:ok", command=("true",))
    failing = cli.submit(command=("sh", "-c", "sleep 0.2; exit 3"))
    never = cli.submit("--after", failing, command=("true",))
    either = cli.submit("--after", f"{never}:any", command=("true",))

    # The array as one record, the tasks by index.
    shown = cli.json("job", "show", array)
    assert shown["array"]["tasks"] == 100
    assert shown["spec"]["array"] == {"indices": "0-99", "max_running": 4, "sweep": []}
    task_7 = cli.json("job", "show", f"{array}[7]")
    assert task_7["array"]["array_id"] == array
    assert task_7["array"]["task_index"] == 7
    assert cli.json("job", "show", f"{array}_7")["id"] == f"{array}[7]"  # Slurm's form

    waited = cli("job", "wait", array, sweep, after_first, either, "--timeout", "120s")
    assert waited.returncode == 0, waited.stderr

    # %4: never more than four at once; every task saw its index and the count.
    seen = _task_results(array_results)
    assert sorted(seen) == list(range(100))
    assert max(int(record["together"]) for record in seen.values()) <= 4
    for index, record in seen.items():
        assert record["MURMUR_ARRAY_TASK_ID"] == str(index)
        assert record["MURMUR_ARRAY_TASK_COUNT"] == "100"
        assert record["MURMUR_ARRAY_JOB_ID"] == array
        assert record["MURMUR_JOB_ID"] == f"{array}[{index}]"
        assert len(record["CUDA_VISIBLE_DEVICES"].split(",")) == 1

    # The sweep: four tasks, each with its values in its environment and labels.
    values = {
        (record["MURMUR_SWEEP_LR"], record["MURMUR_SWEEP_BATCH"])
        for record in _task_results(sweep_results).values()
    }
    assert values == {("1e-3", "32"), ("1e-3", "64"), ("3e-4", "32"), ("3e-4", "64")}
    labelled = cli.json("job", "list", "--label", "lr=3e-4")["jobs"]
    assert sorted(job["id"] for job in labelled) == [f"{sweep}[2]", f"{sweep}[3]"]
    assert {job["spec"]["labels"]["batch"] for job in labelled} == {"32", "64"}

    # job list folds each array into one line; --tasks lists them all.
    listed = cli.json("job", "list")["jobs"]
    folded = next(job for job in listed if job["id"] == array)
    assert folded["state"] == "JOB_STATE_SUCCEEDED"
    assert folded["array"]["tasks_by_state"] == {"succeeded": 100}
    assert not any(job["id"].startswith(f"{array}[") for job in listed)
    assert len(cli.json("job", "list", "--tasks", "--limit", "1000")["jobs"]) >= 104

    # B started only once A had succeeded; B2 ended with a reason; C ran anyway.
    a, b = cli.json("job", "show", first), cli.json("job", "show", after_first)
    assert b["state"] == "JOB_STATE_SUCCEEDED"
    assert _time(b["runs"][0]["created_at"]) >= _time(a["runs"][-1]["finished_at"])
    ended = cli.json("job", "show", never)
    assert ended["state"] == "JOB_STATE_CANCELLED"
    assert ended["reason"] == f"dependency never satisfied: job {failing} failed"
    assert ended["runs"] == []
    assert cli.json("job", "show", either)["state"] == "JOB_STATE_SUCCEEDED"

    # A cycle is refused at submission, naming it; nothing is submitted.
    cycle = tmp_path / "cycle.jsonl"
    cycle.write_text(
        json.dumps({"command": ["true"], "after": [{"job_id": "@2"}]})
        + "\n"
        + json.dumps({"command": ["true"], "after": [{"job_id": "@1"}]})
        + "\n"
    )
    before = len(cli.json("job", "list", "--tasks", "--limit", "1000")["jobs"])
    refused = cli("job", "submit", "--from", str(cycle))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"murmur: error: {cycle}: the batch's jobs wait for each other in a cycle: "
        "job 1 → job 2 → job 1"
    ]
    assert len(cli.json("job", "list", "--tasks", "--limit", "1000")["jobs"]) == before
    unknown = cli("job", "submit", "--after", "nope", "--runtime", "process", "--", "true")
    assert unknown.returncode == 1
    assert "no job nope to wait for" in unknown.stderr

    # Cancelling an array ends every task, running or waiting.
    slow = cli.submit("--array", "0-9%2", command=("sleep", "60"))
    cancelled = cli("job", "cancel", slow)
    assert cancelled.returncode == 0, cancelled.stderr
    stopped = cli("job", "wait", slow, "--timeout", "60s")
    assert stopped.returncode not in (0, 124), stopped.stderr  # a running task's 143
    tasks = cli.json("job", "list", "--tasks", "--limit", "1000")["jobs"]
    assert {job["state"] for job in tasks if job["id"].startswith(f"{slow}[")} == {
        "JOB_STATE_CANCELLED"
    }


def test_a_batch_file_is_submitted_whole_and_a_bad_line_is_named(cli: Cli, tmp_path: Path) -> None:
    batch = tmp_path / "jobs.jsonl"
    batch.write_text(
        "# prepare, then train after it\n"
        + json.dumps({"name": "prep", "command": ["true"], "project": "vision"})
        + "\n\n"
        + json.dumps({"spec": {"name": "train", "command": ["true"], "after": [{"job_id": "@1"}]}})
        + "\n"
    )
    made = cli("job", "submit", "--from", str(batch), "--project", "nlp", "--wait")
    assert made.returncode == 0, made.stderr
    prep, train = made.stdout.split()
    assert cli.json("job", "show", prep)["spec"]["project"] == "vision"
    shown = cli.json("job", "show", train)
    assert shown["spec"]["project"] == "nlp"
    assert shown["spec"]["after"] == [{"job_id": prep, "condition": "DEPENDENCY_CONDITION_OK"}]
    assert [job["id"] for job in cli.json("job", "list", "--project", "nlp")["jobs"]] == [train]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"command": ["true"]}) + "\n" + json.dumps({"command": []}) + "\n")
    before = len(cli.json("job", "list")["jobs"])
    refused = cli("job", "submit", "--from", str(bad))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"murmur: error: {bad} line 2: command is empty: give the program and its "
        "arguments after `--`"
    ]
    assert len(cli.json("job", "list")["jobs"]) == before
    not_json = tmp_path / "broken.jsonl"
    not_json.write_text('{"command": ["true"]}\n{oops\n')
    broken = cli("job", "submit", "--from", str(not_json))
    assert broken.returncode == 1
    assert broken.stderr.startswith(f"murmur: error: {not_json} line 2: not JSON")


def test_an_array_s_text_and_its_refusals(cli: Cli) -> None:
    array = cli.submit("--array", "1,3,5%1", "--project", "vision", command=("sleep", "30"))
    try:
        listing = cli("job", "list")
        assert listing.returncode == 0, listing.stderr
        line = next(line for line in listing.stdout.splitlines() if line.startswith(array))
        assert "3 tasks" in line
        shown = cli("job", "show", array)
        assert "array: 3 tasks (indices 1,3,5, at most 1 at once)" in shown.stdout
        assert "project: vision" in shown.stdout
        held = cli.json("job", "show", f"{array}[5]")
        assert held["reason"].startswith(f"waiting: array {array} runs at most 1 tasks")
        logs = cli("job", "logs", array)
        assert logs.returncode == 1
        assert f"job {array} is an array of 3 tasks: name one, e.g. '{array}[1]'" in logs.stderr
        resubmit = cli("job", "resubmit", f"{array}[3]")
        assert resubmit.returncode == 1
        assert f"is a task of array {array}" in resubmit.stderr
        both = cli(
            "job", "submit", "--array", "0-3", "--sweep", "lr=1,2", "--runtime", "process",
            "--", "true",
        )  # fmt: skip
        assert both.returncode == 1
        assert "--array with --sweep takes only %P" in both.stderr
    finally:
        assert cli("job", "cancel", array).returncode == 0
