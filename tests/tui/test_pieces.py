"""The dashboard's pure parts: formatting, the filter and command languages, the table
model, the submit form, the state's GPU holders, failover order, and the keymap docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from murmur import PermissionDenied, Unavailable, Unimplemented
from murmur.tui.actions import cancel_warning, describe_failure
from murmur.tui.columns import JOB_COLUMNS, JOB_FILTER, SERVICE_FILTER, ServiceRow, job_node
from murmur.tui.commands import Command, CommandError, parse_command
from murmur.tui.connection import Connection
from murmur.tui.format import age, gpu_bar, human_bytes, sparkline
from murmur.tui.history import TelemetryHistory
from murmur.tui.job_form import FormError, JobForm, spec_from_form
from murmur.tui.keymap import KEYMAP
from murmur.tui.screens.job import JobScreen
from murmur.tui.state import ClusterState
from murmur.tui.table_model import TableModel
from murmur.v1 import types_pb2
from tests.tui.fake_cluster import FakeCluster, make_job, make_node, make_service

DOCS = Path(__file__).parents[2] / "docs" / "tui.md"


def test_formatting() -> None:
    assert gpu_bar(3, 8) == "███░░░░░ 3/8"
    assert gpu_bar(0, 0) == "—"
    assert sparkline([0, 50, 100, None], 10) == "▁▄█ "
    assert len(sparkline(list(range(100)), 10)) == 10
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(None) == "—"
    assert [age(s) for s in (5, 125, 3 * 3600 + 240, 3 * 86400)] == ["5s", "2m", "3h4m", "3d"]


def test_filter_language_matches_fields_by_prefix_and_words_anywhere() -> None:
    jobs = [
        make_job("j-1", user="bob", state=types_pb2.JOB_STATE_RUNNING, node="gpu-01"),
        make_job("j-2", user="bob", state=types_pb2.JOB_STATE_PENDING, queue="short"),
        make_job("j-3", user="alice", name="bert", state=types_pb2.JOB_STATE_PENDING),
    ]

    def kept(text: str) -> list[str]:
        predicate = JOB_FILTER.predicate(text)
        return [job.id for job in jobs if predicate is None or predicate(job)]

    assert kept("") == ["j-1", "j-2", "j-3"]
    assert kept("user:bob") == ["j-1", "j-2"]
    assert kept("user:bob state:pend") == ["j-2"]
    assert kept("state:run,pend queue:short") == ["j-2"]
    assert kept("bert") == ["j-3"]
    assert kept("gpu-01 user:bob") == ["j-1"]
    assert kept("color:blue") == []  # an unknown field is a word, found nowhere


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("jobs", Command("jobs")),
        ("j", Command("jobs")),
        ("no", Command("cluster")),
        ("ds", Command("datasets")),
        ("svc", Command("services")),
        ("s", Command("services")),
        ("node gpu-3", Command("node", "gpu-3")),
        ("job abc123", Command("job", "abc123")),
        ("q", Command("quit")),
    ],
)
def test_commands(line: str, command: Command) -> None:
    assert parse_command(line) == command


@pytest.mark.parametrize("line", ["", "bogus", "node", "job"])
def test_bad_commands_say_why(line: str) -> None:
    with pytest.raises(CommandError):
        parse_command(line)


def test_table_model_sorts_filters_and_counts_revisions() -> None:
    model: TableModel[types_pb2.Job] = TableModel(JOB_COLUMNS, sort_column=0)
    model.upsert_many((f"j-{i}", make_job(f"j-{i}", user=f"u{i % 2}")) for i in (3, 1, 2))
    assert model.visible() == ["j-1", "j-2", "j-3"]
    model.sort_by(0)
    assert model.visible() == ["j-3", "j-2", "j-1"]
    revision = model.revision
    model.set_filter(JOB_FILTER.predicate("user:u1"))
    assert model.visible() == ["j-3", "j-1"]
    assert model.revision > revision


def test_submit_form_builds_a_spec_or_names_the_bad_field() -> None:
    spec = spec_from_form(JobForm(name="t", command="python -c 'print(1)'", gpus="2"))
    assert list(spec.command) == ["python", "-c", "print(1)"]
    assert spec.gpus.count == 2
    assert spec.runtime == types_pb2.JOB_RUNTIME_PROCESS
    for form, field in [
        (JobForm(command=""), "command"),
        (JobForm(command="x", gpus="two"), "gpus"),
        (JobForm(command="x", runtime="docker"), "image"),
        (JobForm(command="x", runtime="slurm"), "runtime"),
    ]:
        with pytest.raises(FormError, match=field):
            spec_from_form(form)


def test_state_knows_which_job_holds_each_gpu_and_forgets_it_when_the_job_ends() -> None:
    state = ClusterState()
    job = make_job("j-1", user="bob", node="gpu-01", gpu_indices=[2, 3])
    state.apply_job(job)
    holder = state.holder("gpu-01", 3)
    assert holder is not None
    assert (holder.job_id, holder.user) == ("j-1", "bob")
    assert state.holder("gpu-01", 0) is None
    job.state = types_pb2.JOB_STATE_SUCCEEDED
    state.apply_job(job)
    assert state.holder("gpu-01", 3) is None


def test_an_action_answer_older_than_the_stream_does_not_undo_it() -> None:
    state = ClusterState()
    stopping = make_job("j-1", node="gpu-01", gpu_indices=[0])
    stopping.updated_at.FromSeconds(100)
    ended = types_pb2.Job()
    ended.CopyFrom(stopping)
    ended.state = types_pb2.JOB_STATE_CANCELLED
    ended.updated_at.FromSeconds(101)
    state.apply_job(ended)
    state.apply_job(stopping, unless_older=True)
    assert state.jobs["j-1"].state == types_pb2.JOB_STATE_CANCELLED
    state.apply_job(stopping)
    assert state.jobs["j-1"].state == types_pb2.JOB_STATE_RUNNING


def test_telemetry_history_is_bounded_and_skips_repeated_samples() -> None:
    history = TelemetryHistory(capacity=5)
    for second in range(20):
        history.record(make_node("n", gpus=1, utilization=[second], measured_at=second))
        history.record(make_node("n", gpus=1, utilization=[second], measured_at=second))
    assert list(history.of("n", 0).utilization) == [15.0, 16.0, 17.0, 18.0, 19.0]


def test_failures_read_as_one_line_with_the_code() -> None:
    refused = describe_failure("drain node a", PermissionDenied("admins only", code=None))
    assert refused.startswith("drain node a refused by the node: admins only")
    assert "does not offer it yet" in describe_failure("x", Unimplemented("later"))


def test_cancel_warnings_follow_roles_and_ownership() -> None:
    job = make_job("j-1", user="bob")
    member = types_pb2.Identity(name="alice", role=types_pb2.ROLE_MEMBER)
    admin = types_pb2.Identity(name="alice", role=types_pb2.ROLE_ADMIN)
    viewer = types_pb2.Identity(name="bob", role=types_pb2.ROLE_VIEWER)
    assert "bob's job" in cancel_warning(job, member)
    assert cancel_warning(job, admin) == ""
    assert "needs the member role" in cancel_warning(job, viewer)
    assert cancel_warning(job, types_pb2.Identity(name="bob", role=types_pb2.ROLE_MEMBER)) == ""


async def test_failover_tries_the_other_nodes_then_the_first_again() -> None:
    first, second = FakeCluster(attached_node="a"), FakeCluster(attached_node="b")
    first.address, second.address = "10.0.0.1:7070", "10.0.0.2:7070"
    clients = {first.address: first, second.address: second}
    connection = Connection(first.address, lambda address: clients[address])
    await connection.attach()
    connection.learn([make_node("b", address=second.address)])
    connection.learn([make_node("c", address="10.0.0.3:7070", state=types_pb2.NODE_STATE_DEAD)])
    assert connection.known_addresses == [first.address, second.address]
    second.refuse["whoami"] = Unavailable("down")
    assert await connection.failover("stream ended")
    assert connection.node_name == "a"
    assert "after: stream ended" in connection.notice
    del second.refuse["whoami"]
    assert await connection.failover("lost")
    assert connection.node_name == "b"
    assert connection.notice.startswith("reconnected to b at 10.0.0.2:7070; lost a")
    first.refuse["whoami"] = second.refuse["whoami"] = Unavailable("down")
    assert not await connection.failover("lost")
    assert connection.notice.startswith("disconnected:")


def test_the_docs_page_lists_every_key() -> None:
    page = DOCS.read_text(encoding="utf-8")
    for entry in KEYMAP:
        for key in entry.keys.split(" / "):
            assert f"`{key}`" in page, key


def test_a_screen_not_yet_composed_ignores_the_repaint_tick() -> None:
    # Regression: the app's 0.1 s tick reached a just-pushed Job view before its
    # widgets existed, and `murmur top` died with NoMatches('#job-spec').
    JobScreen("abc123").refresh_view(force=True)


def test_a_gangs_node_column_names_every_rank_of_its_latest_run() -> None:
    job = types_pb2.Job(id="g", spec=types_pb2.JobSpec(nodes=2))
    assert job_node(job) == ""
    job.runs.add(id="r1", node="gpu-3", node_rank=0)  # an earlier run, ended
    job.runs.add(id="r2", node="gpu-2", node_rank=1)
    job.runs.add(id="r2", node="gpu-1", node_rank=0)
    assert job_node(job) == "gpu-1,gpu-2"


def test_service_news_counts_replica_changes_not_telemetry() -> None:
    def gpu01(
        utilization: int,
        *,
        ready: bool | None = None,
        state: types_pb2.NodeState.ValueType = types_pb2.NODE_STATE_ALIVE,
    ) -> types_pb2.NodeInfo:
        node = make_node("gpu-01", utilization=[utilization], state=state)
        if ready is not None:
            node.endpoints.add(service="llama", job_id="j-2", port=41000, ready=ready)
        return node

    state = ClusterState()
    state.apply_node(gpu01(10))
    state.apply_job(make_job("j-1"))
    assert state.service_news == 0  # no replica anywhere
    state.apply_node(gpu01(10, ready=False))
    assert state.service_news == 1
    state.apply_node(gpu01(90, ready=False))
    assert state.service_news == 1  # a telemetry sample alone
    state.apply_node(gpu01(90, ready=True))
    assert state.service_news == 2
    state.apply_node(gpu01(90, ready=True, state=types_pb2.NODE_STATE_DEAD))
    assert state.service_news == 3
    replica = make_job("j-2")
    replica.spec.replica_of.service = "llama"
    state.apply_job(replica)
    assert state.service_news == 4


def test_services_filter_by_user_model_and_words() -> None:
    services = [
        ServiceRow(make_service("llama", model="llama-3-8b", aliases=["chat"], user="carol")),
        ServiceRow(make_service("coder", model="qwen2.5-coder-7b", user="bob")),
    ]

    def kept(text: str) -> list[str]:
        predicate = SERVICE_FILTER.predicate(text)
        return [r.service.spec.name for r in services if predicate is None or predicate(r)]

    assert kept("user:bob") == ["coder"]
    assert kept("model:llama") == ["llama"]
    assert kept("chat") == ["llama"]
    assert kept("name:c") == ["coder"]


async def test_a_refresh_tick_while_the_app_closes_is_a_no_op() -> None:
    """The refresh timer can fire once more after the screens are gone (seen as a
    ScreenStackError when a test's app closed under load): the tick does nothing."""
    from murmur.tui.app import MurmurTop

    cluster = FakeCluster(attached_node="a")
    app = MurmurTop(Connection("10.0.0.1:7070", lambda address: cluster))
    assert app.screen_stack == []
    app._tick()  # must not raise
