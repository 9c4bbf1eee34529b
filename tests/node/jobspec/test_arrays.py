"""The words of arrays, sweeps, dependencies and batches: parsing, checks, and what a
task is sent to run."""

from __future__ import annotations

import pytest

from murmur.node.errors import InvalidArgumentError
from murmur.node.jobspec.arrays import (
    MAX_ARRAY_TASKS,
    check_array,
    check_dependencies,
    check_project,
    parse_indices,
    spec_to_run,
    split_task_id,
    sweep_values,
    task_id,
    task_indices,
)
from murmur.node.jobspec.batches import batch_job_id, batch_order, with_ids
from murmur.node.jobspec.validation import validate_job_spec
from murmur.v1 import types_pb2


def job(**fields: object) -> types_pb2.JobSpec:
    return types_pb2.JobSpec(command=["true"], **fields)  # type: ignore[arg-type]


def test_indices_read_as_slurm_writes_them() -> None:
    assert parse_indices("0-3") == (0, 1, 2, 3)
    assert parse_indices("1,3,5-7") == (1, 3, 5, 6, 7)
    assert parse_indices("0-15:4") == (0, 4, 8, 12)
    assert parse_indices("9, 2") == (2, 9)
    assert len(parse_indices(f"0-{MAX_ARRAY_TASKS - 1}")) == MAX_ARRAY_TASKS


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "is not an index"),
        ("a-b", "is not an index"),
        ("5-1", "ends before it starts"),
        ("0-4:0", "has a step below 1"),
        ("1,1", "index 1 is named twice"),
        (f"0-{MAX_ARRAY_TASKS}", f"at most {MAX_ARRAY_TASKS} tasks"),
        ("2000000", "an index is at most"),
    ],
)
def test_bad_indices_are_refused_saying_why(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_indices(text)


def test_task_ids_name_the_array_and_the_index() -> None:
    assert task_id("abc", 7) == "abc[7]"
    assert split_task_id("abc[7]") == ("abc", 7)
    assert split_task_id("abc") is None
    assert split_task_id("[7]") is None


def test_a_sweep_is_the_cartesian_product_the_last_parameter_fastest() -> None:
    spec = job()
    spec.array.sweep.add(name="lr", values=["1e-3", "3e-4"])
    spec.array.sweep.add(name="batch", values=["32", "64", "128"])
    assert list(task_indices(spec.array)) == list(range(6))
    assert sweep_values(spec.array, 0) == [("lr", "1e-3"), ("batch", "32")]
    assert sweep_values(spec.array, 4) == [("lr", "3e-4"), ("batch", "64")]


def test_a_task_is_sent_its_index_count_values_and_project() -> None:
    spec = job(project="vision", env={"A": "1"})
    spec.array.sweep.add(name="lr", values=["1e-3", "3e-4"])
    run = spec_to_run("abc[1]", spec)
    assert dict(run.env) == {
        "A": "1",
        "MURMUR_ARRAY_JOB_ID": "abc",
        "MURMUR_ARRAY_TASK_ID": "1",
        "MURMUR_ARRAY_TASK_COUNT": "2",
        "MURMUR_SWEEP_LR": "3e-4",
        "MURMUR_PROJECT": "vision",
    }
    assert dict(run.labels) == {"lr": "3e-4"}
    assert dict(spec.env) == {"A": "1"}  # the shared spec is left as it was
    plain = job()
    assert spec_to_run("j1", plain) is plain


@pytest.mark.parametrize(
    ("array", "error"),
    [
        (types_pb2.ArraySpec(), "needs indices"),
        (types_pb2.ArraySpec(indices="x"), "array indices 'x'"),
        (
            types_pb2.ArraySpec(
                indices="0-1", sweep=[types_pb2.SweepParameter(name="a", values=["1"])]
            ),
            "indices or a sweep, not both",
        ),
        (
            types_pb2.ArraySpec(sweep=[types_pb2.SweepParameter(name="1a", values=["1"])]),
            "a name is",
        ),
        (types_pb2.ArraySpec(sweep=[types_pb2.SweepParameter(name="a", values=[])]), "no values"),
        (types_pb2.ArraySpec(sweep=[types_pb2.SweepParameter(name="a", values=["-1"])]), "label's"),
        (
            types_pb2.ArraySpec(
                sweep=[
                    types_pb2.SweepParameter(name="a", values=["1"]),
                    types_pb2.SweepParameter(name="A", values=["2"]),
                ]
            ),
            "given twice",
        ),
        (
            types_pb2.ArraySpec(
                sweep=[
                    types_pb2.SweepParameter(name=f"p{n}", values=["1", "2", "3", "4", "5"])
                    for n in range(6)
                ]
            ),
            "more than",
        ),
    ],
)
def test_bad_arrays_are_refused_naming_the_field(array: types_pb2.ArraySpec, error: str) -> None:
    with pytest.raises(InvalidArgumentError, match=error):
        check_array(job(array=array))


def test_a_sweep_parameter_may_not_also_be_a_label() -> None:
    spec = job(labels={"lr": "x"})
    spec.array.sweep.add(name="lr", values=["1"])
    with pytest.raises(InvalidArgumentError, match="label lr is set by the sweep"):
        check_array(spec)


def test_dependencies_name_jobs_once_and_batch_references_only_in_a_batch() -> None:
    check_dependencies(job(after=[types_pb2.Dependency(job_id="abc[3]")]))
    with pytest.raises(InvalidArgumentError, match="@N names the Nth job of a batch"):
        check_dependencies(job(after=[types_pb2.Dependency(job_id="@1")]))
    check_dependencies(job(after=[types_pb2.Dependency(job_id="@2")]), batch_size=2)
    with pytest.raises(InvalidArgumentError, match="the batch has 2 jobs"):
        check_dependencies(job(after=[types_pb2.Dependency(job_id="@3")]), batch_size=2)
    with pytest.raises(InvalidArgumentError, match="named twice"):
        check_dependencies(job(after=[types_pb2.Dependency(job_id="a")] * 2))
    with pytest.raises(InvalidArgumentError, match="not a job id"):
        check_dependencies(job(after=[types_pb2.Dependency(job_id="a b")]))
    with pytest.raises(InvalidArgumentError, match="unknown condition"):
        check_dependencies(job(after=[types_pb2.Dependency(job_id="a", condition=9)]))  # type: ignore[arg-type]


def test_validation_reads_an_unset_condition_as_ok_and_checks_the_project() -> None:
    validated = validate_job_spec(
        job(after=[types_pb2.Dependency(job_id="a")], project="vision"), known_datasets=()
    )
    assert validated.spec.after[0].condition == types_pb2.DEPENDENCY_CONDITION_OK
    check_project("")
    with pytest.raises(InvalidArgumentError, match="project 'a b'"):
        check_project("a b")


def test_a_batch_is_ordered_so_each_job_follows_those_it_waits_for() -> None:
    first = job(after=[types_pb2.Dependency(job_id="@3")])
    second = job()
    third = job(after=[types_pb2.Dependency(job_id="@2")])
    assert batch_order([first, second, third]) == [1, 2, 0]
    ids = ["i1", "i2", "i3"]
    assert [d.job_id for d in with_ids(first, ids).after] == ["i3"]
    assert with_ids(second, ids) is second
    assert batch_job_id("alice", "k") == batch_job_id("alice", "k") != batch_job_id("bob", "k")


def test_a_cycle_in_a_batch_is_refused_naming_it() -> None:
    looped = [
        job(after=[types_pb2.Dependency(job_id="@3")]),
        job(after=[types_pb2.Dependency(job_id="@1")]),
        job(after=[types_pb2.Dependency(job_id="@2")]),
    ]
    with pytest.raises(InvalidArgumentError, match="job 1 → job 3 → job 2 → job 1"):
        batch_order(looped)
    with pytest.raises(InvalidArgumentError, match="job 1 of the batch waits for itself"):
        batch_order([job(after=[types_pb2.Dependency(job_id="@1")])])
