"""A CLI a script can lean on, against a real node: ``job wait`` and ``submit
--wait`` exit with the job's code, ``--json`` records, newest jobs first, a job's
events in ``job show``, ``job resubmit``.

One node serves the whole module (each test makes jobs of its own), so these stay
quick; its jobs are processes that end within a second or two.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from murmur.certs import Role
from tests.support.nodes import Lab, NodeProcess, create_lab


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, NodeProcess]]:
    lab = create_lab(tmp_path_factory.mktemp("scripting"))
    try:
        node = lab.start_node("node-1", data_dir=lab.first_data_dir)
        yield lab, node
    finally:
        lab.stop_all()


class Cli:
    """``murmur`` against the module's node, as admin unless told otherwise."""

    def __init__(self, lab: Lab, node: NodeProcess) -> None:
        self.lab, self.node = lab, node

    def __call__(self, *args: str, **kwargs: Any) -> Any:
        # `job submit ... -- CMD` takes everything after `--`: flags go first.
        return self.lab.murmur(*args[:2], "--node", self.node.address, *args[2:], **kwargs)

    def submit(self, *command: str, flags: tuple[str, ...] = (), **kwargs: Any) -> str:
        result = self("job", "submit", "--runtime", "process", *flags, "--", *command, **kwargs)
        assert result.returncode == 0, result.stderr
        job_id: str = result.stdout.strip()
        return job_id

    def show(self, job_id: str) -> dict[str, Any]:
        shown: dict[str, Any] = json.loads(self("job", "show", job_id, "--json").stdout)
        return shown


@pytest.fixture
def cli(cluster: tuple[Lab, NodeProcess]) -> Cli:
    return Cli(*cluster)


def test_wait_exits_with_the_job_s_code_and_waits_for_every_job(cli: Cli) -> None:
    seven = cli.submit("sh", "-c", "sleep 0.3; exit 7")
    fine = cli.submit("true")
    four = cli.submit("sh", "-c", "sleep 1; exit 4")

    one = cli("job", "wait", seven)
    assert one.returncode == 7, one.stderr
    assert one.stdout == ""
    assert f"{seven}: failed, exit code 7" in one.stderr

    # Several: every one ends, and the code is that of the first failure as given.
    several = cli("job", "wait", fine, four, seven, "--json")
    assert several.returncode == 4, several.stderr
    jobs = json.loads(several.stdout)["jobs"]
    assert [job["id"] for job in jobs] == [fine, four, seven]
    assert [job["state"] for job in jobs] == [
        "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_FAILED",
    ]  # fmt: skip
    assert cli("job", "wait", fine).returncode == 0

    unknown = cli("job", "wait", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == ["murmur: error: no job 'nope'"]


def test_any_returns_at_the_first_end_and_a_timeout_has_its_own_code(cli: Cli) -> None:
    slow = cli.submit("sleep", "60")
    three = cli.submit("sh", "-c", "sleep 0.5; exit 3")
    try:
        began = time.monotonic()
        first = cli("job", "wait", "--any", slow, three)
        assert first.returncode == 3, first.stderr
        assert time.monotonic() - began < 20
        assert cli.show(slow)["state"] in ("JOB_STATE_RUNNING", "JOB_STATE_STARTING")

        timed_out = cli("job", "wait", slow, "--timeout", "1s")
        assert timed_out.returncode == 124
        assert timed_out.stderr.strip().splitlines() == [
            f"murmur: error: timed out after 1s waiting for job {slow} (running)"
        ]
    finally:
        cancelled = cli("job", "cancel", slow, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["id"] == slow
    assert cli("job", "wait", slow).returncode != 0  # cancelled: not a success


def test_submit_wait_prints_the_id_first_and_exits_with_the_job_s_code(cli: Cli) -> None:
    waited = cli("job", "submit", "--wait", "--runtime", "process", "--", "sh", "-c", "exit 5")
    assert waited.returncode == 5, waited.stderr
    job_id = waited.stdout.strip()
    assert waited.stdout == f"{job_id}\n"
    assert cli.show(job_id)["exit_code"] == 5

    timed_out = cli(
        "job", "submit", "--wait-timeout", "1s", "--runtime", "process", "--", "sleep", "60"
    )  # fmt: skip
    assert timed_out.returncode == 124
    slow = timed_out.stdout.strip()
    assert f"timed out after 1s waiting for job {slow}" in timed_out.stderr
    assert cli("job", "cancel", slow).returncode == 0


def test_submit_json_prints_the_job_record(cli: Cli) -> None:
    submitted = cli(
        "job", "submit", "--json", "--name", "rec", "--runtime", "process", "--", "true"
    )
    assert submitted.returncode == 0, submitted.stderr
    record = json.loads(submitted.stdout)
    assert record["spec"]["name"] == "rec"
    assert record["user"] == "admin"
    assert cli.show(record["id"])["spec"]["command"] == ["true"]

    waited = cli(
        "job", "submit", "--json", "--wait", "--runtime", "process", "--", "sh", "-c", "exit 2"
    )  # fmt: skip
    assert waited.returncode == 2
    ended = json.loads(waited.stdout)  # one document: the job as it ended
    assert (ended["state"], ended["exit_code"]) == ("JOB_STATE_FAILED", 2)


def test_job_list_shows_the_newest_first_and_limit_keeps_the_newest(cli: Cli) -> None:
    lister = cli.lab.issue_identity("lister", Role.MEMBER)
    for name in ("one", "two", "three"):
        cli.submit("true", flags=("--name", name), identity=lister)

    def names(*flags: str) -> list[str]:
        result = cli("job", "list", "--user", "lister", "--json", *flags)
        assert result.returncode == 0, result.stderr
        return [job["spec"]["name"] for job in json.loads(result.stdout)["jobs"]]

    assert names() == ["three", "two", "one"]
    assert names("--limit", "2") == ["three", "two"]
    assert names("--oldest-first", "--limit", "2") == ["one", "two"]
    table = cli("job", "list", "--user", "lister").stdout.splitlines()
    assert [line.split()[1] for line in table[1:]] == ["three", "two", "one"]


def test_job_show_prints_the_job_s_events(cli: Cli) -> None:
    job_id = cli.submit("sh", "-c", "exit 9")
    assert cli("job", "wait", job_id).returncode == 9
    lines = cli("job", "show", job_id).stdout.splitlines()
    events = lines[lines.index("events:") + 2 :]
    assert "submitted by admin" in events[0]
    assert [line.split()[2] for line in events][-1] == "failed"
    assert "exited with code 9" in events[-1]
    assert any(line.split()[2] == "running" for line in events)


def test_resubmit_submits_the_same_spec_as_a_new_job(cli: Cli) -> None:
    first = cli.submit(
        "sh", "-c", 'exit "$CODE"', flags=("--env", "CODE=6", "--label", "run=a", "--name", "re")
    )
    assert cli("job", "wait", first).returncode == 6
    again = cli("job", "resubmit", first, "--wait")
    assert again.returncode == 6, again.stderr
    second = again.stdout.strip()
    assert second
    assert second != first
    assert f"resubmitted {first} as {second}" in again.stderr
    old, new = cli.show(first)["spec"], cli.show(second)["spec"]
    assert new == old
    assert (new["env"], new["labels"]) == ({"CODE": "6"}, {"run": "a"})

    # Env values another member may not see are not resubmitted as "<redacted>".
    alice = cli.lab.issue_identity("alice", Role.MEMBER)
    hidden = cli("job", "resubmit", first, identity=alice)
    assert hidden.returncode == 1
    assert "whose env values (CODE) are hidden from you" in hidden.stderr


def test_a_job_with_secrets_is_not_resubmitted(cli: Cli) -> None:
    job_id = cli.submit("true", flags=("--secret", "HF_TOKEN=abc", "--secret", "W=x"))
    refused = cli("job", "resubmit", job_id)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        f"murmur: error: job {job_id} has secrets (HF_TOKEN, W), whose values are never "
        "returned: it cannot be resubmitted as it is; submit it again with --secret or "
        "--secret-file"
    ]
