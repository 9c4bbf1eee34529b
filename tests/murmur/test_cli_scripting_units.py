"""The parts of a scriptable CLI that need no node: exit codes of a wait, what a
resubmission refuses, node address lists, and the remembered addresses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import murmur
from murmur._cli.commands_jobs import REDACTED, resubmittable_spec
from murmur._cli.errors import CommandError
from murmur._cli.job_wait import exit_code_of, outcome
from murmur._cli.main import build_parser
from murmur._config import (
    client_settings_path,
    known_nodes_path,
    remember_addresses,
    remembered_addresses,
    resolve_connect_config,
)
from murmur.certs import CertificateAuthority, Role
from murmur.node.api.services import job_visibility
from murmur.v1 import types_pb2


@pytest.fixture(scope="module")
def lab_cas(tmp_path_factory: pytest.TempPathFactory) -> list[CertificateAuthority]:
    root = tmp_path_factory.mktemp("cas")
    return [CertificateAuthority.create(root / f"ca-{n}") for n in (1, 2)]


@pytest.fixture
def home(tmp_path: Path, lab_cas: list[CertificateAuthority]) -> Path:
    home = tmp_path / "home"
    lab_cas[0].issue(name="ada", role=Role.MEMBER, validity_days=30).write(home / "identity.pem")
    return home


def job(
    job_id: str,
    state: types_pb2.JobState.ValueType,
    exit_code: int | None = None,
) -> types_pb2.Job:
    ended = types_pb2.Job(id=job_id, state=state)
    if exit_code is not None:
        ended.exit_code = exit_code
    return ended


SUCCEEDED, FAILED = types_pb2.JOB_STATE_SUCCEEDED, types_pb2.JOB_STATE_FAILED
CANCELLED, LOST = types_pb2.JOB_STATE_CANCELLED, types_pb2.JOB_STATE_LOST


@pytest.mark.parametrize(
    ("ended", "code"),
    [
        (job("a", SUCCEEDED, 0), 0),
        (job("a", FAILED, 7), 7),
        (job("a", FAILED, 137), 137),  # killed by SIGKILL: 128 + 9, as shells say
        (job("a", FAILED), 1),  # failed before it ran: no exit code
        (job("a", FAILED, 0), 1),  # ended badly (time limit...) though it exited 0
        (job("a", FAILED, 300), 1),  # no process can exit with that
        (job("a", CANCELLED, 143), 143),
        (job("a", LOST), 1),
    ],
)
def test_a_job_s_exit_code_is_what_a_script_gets(ended: types_pb2.Job, code: int) -> None:
    assert exit_code_of(ended) == code


def test_waiting_for_all_gives_the_first_failure_in_the_order_given() -> None:
    jobs = [job("a", SUCCEEDED, 0), job("b", FAILED, 3), job("c", FAILED, 5)]
    assert outcome(jobs, ["c", "b", "a"], first=False) == 3
    assert outcome([job("a", SUCCEEDED, 0), job("b", SUCCEEDED, 0)], ["a", "b"], first=False) == 0


def test_waiting_for_any_gives_the_code_of_the_one_that_ended_first() -> None:
    jobs = [job("a", FAILED, 3), job("b", SUCCEEDED, 0)]
    assert outcome(jobs, ["b"], first=True) == 0
    assert outcome(jobs, ["a", "b"], first=True) == 3


def test_all_and_any_exclude_each_other_and_all_is_the_default() -> None:
    parser = build_parser()
    assert parser.parse_args(["job", "wait", "a", "b"]).any is False
    assert parser.parse_args(["job", "wait", "--any", "a", "b"]).any is True
    with pytest.raises(SystemExit):
        parser.parse_args(["job", "wait", "--any", "--all", "a"])


def test_a_job_with_secrets_is_not_resubmitted_and_the_message_names_them() -> None:
    secret = types_pb2.Job(
        id="j1", spec=types_pb2.JobSpec(command=["x"], secret_names=["WANDB_KEY", "HF_TOKEN"])
    )
    with pytest.raises(CommandError, match=r"job j1 has secrets \(HF_TOKEN, WANDB_KEY\)"):
        resubmittable_spec(secret, types_pb2.JobSpec())


def test_a_job_whose_env_values_are_hidden_from_the_caller_is_not_resubmitted() -> None:
    assert REDACTED == job_visibility.REDACTED  # what the node shows in their place
    hidden = types_pb2.Job(
        id="j2",
        user="bob",
        spec=types_pb2.JobSpec(command=["x"], env={"A": REDACTED, "B": REDACTED}),
    )
    with pytest.raises(CommandError, match=r"belongs to bob, whose env values \(A, B\)"):
        resubmittable_spec(hidden, types_pb2.JobSpec())


def test_a_resubmitted_spec_is_the_spec_returned() -> None:
    spec = types_pb2.JobSpec(command=["python", "train.py"], env={"SEED": "1"}, retries=2)
    again = resubmittable_spec(types_pb2.Job(id="j3", spec=spec), types_pb2.JobSpec())
    assert again == spec


# ------------------------------------------------------------ several node addresses


def test_several_nodes_from_a_flag_the_environment_or_the_settings_file(home: Path) -> None:
    config = resolve_connect_config(node="10.0.0.1:7070, 10.0.0.2:7070", env={}, home=home)
    assert config.address == "10.0.0.1:7070"
    assert config.fallback_addresses == ("10.0.0.2:7070",)

    env = {"MURMUR_NODE": "10.0.0.3:7070,10.0.0.3:7070,10.0.0.4:7070"}
    config = resolve_connect_config(env=env, home=home)
    assert (config.address, config.fallback_addresses) == ("10.0.0.3:7070", ("10.0.0.4:7070",))

    client_settings_path(home).write_text('node = ["gpu-1:7070", "gpu-2:7070"]\n')
    config = resolve_connect_config(env={}, home=home)
    assert (config.address, config.fallback_addresses) == ("gpu-1:7070", ("gpu-2:7070",))


def test_a_bad_address_in_a_list_names_where_it_came_from(home: Path) -> None:
    with pytest.raises(murmur.ConfigError, match=r"'gpu-02' \(from MURMUR_NODE\)"):
        resolve_connect_config(env={"MURMUR_NODE": "gpu-01:7070,gpu-02"}, home=home)
    client_settings_path(home).write_text('node = ["gpu-1:7070", 7070]\n')
    with pytest.raises(murmur.ConfigError, match="`node` must be a string"):
        resolve_connect_config(env={}, home=home)


def test_remembered_addresses_belong_to_the_cluster_of_their_ca(
    home: Path, lab_cas: list[CertificateAuthority], tmp_path: Path
) -> None:
    ours = resolve_connect_config(env={}, home=home).tls
    other_identity = tmp_path / "other.pem"
    lab_cas[1].issue(name="ada", role=Role.MEMBER, validity_days=30).write(other_identity)
    theirs = murmur.TLSConfig.from_identity_file(other_identity)

    assert remembered_addresses(home, ours) == []
    assert remember_addresses(home, ours, ["10.0.0.1:7070", "10.0.0.2:7070"])
    assert remember_addresses(home, theirs, ["10.9.0.1:7070"])
    assert not remember_addresses(home, ours, ["10.0.0.1:7070", "10.0.0.2:7070"])  # unchanged
    assert remembered_addresses(home, ours) == ["10.0.0.1:7070", "10.0.0.2:7070"]
    assert remembered_addresses(home, theirs) == ["10.9.0.1:7070"]
    assert remember_addresses(home, ours, ["10.0.0.2:7070"])  # the latest answer wins
    assert remembered_addresses(home, ours) == ["10.0.0.2:7070"]


@pytest.mark.parametrize(
    "text", ["not json", "[]", '{"clusters": 3}', '{"clusters": {"x": 1}}', '{"clusters": {}}']
)
def test_a_damaged_memory_of_addresses_is_ignored_and_rewritten(home: Path, text: str) -> None:
    tls = resolve_connect_config(env={}, home=home).tls
    known_nodes_path(home).write_text(text)
    assert remembered_addresses(home, tls) == []
    assert remember_addresses(home, tls, ["10.0.0.1:7070"])
    assert remembered_addresses(home, tls) == ["10.0.0.1:7070"]
    assert list(json.loads(known_nodes_path(home).read_text())) == ["clusters"]
