"""``job submit``'s array, sweep, dependency and batch flags, parsed without a node."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from murmur._cli.errors import CommandError
from murmur._cli.job_arrays import (
    ArrayFlag,
    apply_array_flags,
    job_id_argument,
    parse_after,
    parse_array,
    parse_sweep,
    read_batch,
)
from murmur._cli.run_flags import project_of
from murmur.v1 import types_pb2


def test_array_flags_read_indices_and_a_limit() -> None:
    assert parse_array("0-999%16") == ArrayFlag("0-999", 16)
    assert parse_array("1,3,5") == ArrayFlag("1,3,5", 0)
    assert parse_array("%4") == ArrayFlag("", 4)
    for bad in ("", "%", "0-9%0", "0-9%x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_array(bad)


def test_sweep_and_after_flags() -> None:
    assert parse_sweep("lr=1e-3, 3e-4") == ("lr", ["1e-3", "3e-4"])
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=V1,V2"):
        parse_sweep("lr=")
    assert parse_after("abc") == ("abc", "ok")
    assert parse_after("abc[3]:any") == ("abc[3]", "any")
    assert parse_after("abc:afternotok") == ("abc", "failed")
    with pytest.raises(argparse.ArgumentTypeError, match="ok, any, failed"):
        parse_after("abc:sometimes")
    assert parse_after("4b1d_7:any") == ("4b1d[7]", "any")


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("4b1dc0ffee00_7", "4b1dc0ffee00[7]"),  # Slurm's form of a task: no quotes needed
        ("4b1dc0ffee00_007", "4b1dc0ffee00[7]"),
        ("4b1dc0ffee00[7]", "4b1dc0ffee00[7]"),
        ("4b1dc0ffee00", "4b1dc0ffee00"),
        ("my_job_7", "my_job_7"),  # not a hex id: taken as typed
        ("4b1d_x", "4b1d_x"),
    ],
)
def test_a_task_may_be_named_as_slurm_does(typed: str, meant: str) -> None:
    assert job_id_argument(typed) == meant


def test_every_job_command_taking_an_id_takes_slurms_form() -> None:
    from murmur._cli.main import build_parser

    for command in (
        ["job", "show", "4b1d_7"],
        ["job", "logs", "4b1d_7"],
        ["job", "cancel", "4b1d_7"],
        ["job", "resubmit", "4b1d_7"],
    ):
        assert build_parser(command).parse_args(command).id == "4b1d[7]", command
    wait = ["job", "wait", "4b1d_7", "4b1d_8"]
    assert build_parser(wait).parse_args(wait).ids == ["4b1d[7]", "4b1d[8]"]


def test_flags_become_the_spec_s_array_and_dependencies() -> None:
    spec = types_pb2.JobSpec()
    args = argparse.Namespace(
        array=ArrayFlag("", 2), sweep=[("lr", ["1", "2"])], after=[("abc", "failed")]
    )
    apply_array_flags(spec, args)
    assert spec.array.max_running == 2
    assert [(p.name, list(p.values)) for p in spec.array.sweep] == [("lr", ["1", "2"])]
    assert spec.after[0].condition == types_pb2.DEPENDENCY_CONDITION_FAILED
    with pytest.raises(CommandError, match="%P alone goes with --sweep"):
        apply_array_flags(
            types_pb2.JobSpec(), argparse.Namespace(array=ArrayFlag("", 2), sweep=[], after=[])
        )


def test_a_batch_file_keeps_its_lines_and_names_them(tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        "# a comment\n\n"
        + json.dumps({"command": ["a"]})
        + "\n"
        + json.dumps({"spec": {"command": ["b"], "project": "mine"}, "idempotency_key": "k"})
        + "\n"
    )
    batch = read_batch(str(path), project="lab")
    assert batch.lines == [3, 4]
    assert [r.spec.project for r in batch.requests] == ["lab", "mine"]
    assert batch.requests[1].idempotency_key == "k"
    assert batch.requests[0].idempotency_key  # a fresh one
    assert batch.located("job 2: command is empty") == f"{path} line 4: command is empty"
    assert batch.located("no leader") == f"{path}: no leader"
    path.write_text('{"command": ["a"], "gpus": "many"}\n')
    with pytest.raises(CommandError, match="line 1: Failed to parse gpus"):
        read_batch(str(path), project="")
    path.write_text("[1]\n")
    with pytest.raises(CommandError, match="line 1: expected a JSON object"):
        read_batch(str(path), project="")
    path.write_text("# nothing\n")
    with pytest.raises(CommandError, match="holds no job"):
        read_batch(str(path), project="")


def test_the_project_comes_from_the_flag_else_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MURMUR_PROJECT", "from-env")
    assert project_of(argparse.Namespace(project=None)) == "from-env"
    assert project_of(argparse.Namespace(project="flag")) == "flag"
    monkeypatch.delenv("MURMUR_PROJECT")
    assert project_of(argparse.Namespace(project=None)) == ""
