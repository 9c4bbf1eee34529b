"""Every path a user gives is checked against its roots after symlinks are resolved:
dataset paths (data roots), and a process job's workdir, venv and conda env (job
path roots), at submission and again on the node that starts the run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest

from murmur.node.agent.datasets import resolve_under_roots
from murmur.node.errors import InvalidArgumentError
from murmur.node.jobspec.paths import MAX_PATH_BYTES, check_job_paths, contained_path
from murmur.node.jobspec.validation import validate_job_spec
from murmur.v1 import types_pb2


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """A root holding a directory, a symlink out of the root and one that stays in it,
    and a directory outside the root."""
    root = tmp_path / "root"
    inside = root / "project"
    inside.mkdir(parents=True)
    (inside / "conda-meta").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    (root / "alias").symlink_to(inside)
    return {"root": root, "inside": inside, "outside": outside}


def _submit(field: str, value: str, roots: tuple[Path, ...]) -> None:
    spec = types_pb2.JobSpec(command=["true"], **{field: value})
    validate_job_spec(spec, known_datasets=(), path_roots=tuple(PurePosixPath(r) for r in roots))


def _run_start(field: str, value: str, roots: tuple[Path, ...]) -> None:
    check_job_paths(types_pb2.JobSpec(command=["true"], **{field: value}), roots)


def _dataset(field: str, value: str, roots: tuple[Path, ...]) -> None:
    resolve_under_roots(value, roots)


CHECKS: list[tuple[str, Callable[[str, str, tuple[Path, ...]], None], str]] = [
    ("workdir", _submit, "submit"),
    ("venv", _submit, "submit"),
    ("conda_env", _submit, "submit"),
    ("workdir", _run_start, "run-start"),
    ("venv", _run_start, "run-start"),
    ("conda_env", _run_start, "run-start"),
    ("dataset path", _dataset, "add-dataset"),
]
IDS = [f"{where}-{field}" for field, _, where in CHECKS]


@pytest.mark.parametrize(("field", "check", "where"), CHECKS, ids=IDS)
def test_a_path_inside_the_root_is_accepted_even_through_a_symlink_that_stays_in(
    tree: dict[str, Path], field: str, check: Callable[..., None], where: str
) -> None:
    check(field, str(tree["inside"]), (tree["root"],))
    check(field, str(tree["root"] / "alias"), (tree["root"],))


@pytest.mark.parametrize(("field", "check", "where"), CHECKS, ids=IDS)
def test_dot_dot_is_refused_even_when_it_would_land_inside(
    tree: dict[str, Path], field: str, check: Callable[..., None], where: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=rf"{field} must not contain '\.\.'"):
        check(field, f"{tree['inside']}/../project", (tree["root"],))


@pytest.mark.parametrize(("field", "check", "where"), CHECKS, ids=IDS)
def test_a_relative_path_is_refused(
    tree: dict[str, Path], field: str, check: Callable[..., None], where: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=f"{field} must be absolute"):
        check(field, "project", (tree["root"],))


@pytest.mark.parametrize(("field", "check", "where"), CHECKS, ids=IDS)
def test_an_absolute_path_outside_the_roots_is_refused(
    tree: dict[str, Path], field: str, check: Callable[..., None], where: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=f"{field} {tree['outside']} is outside"):
        check(field, str(tree["outside"]), (tree["root"],))


@pytest.mark.parametrize(("field", "check", "where"), CHECKS, ids=IDS)
def test_a_symlink_out_of_a_root_is_refused_with_where_it_leads(
    tree: dict[str, Path], field: str, check: Callable[..., None], where: str
) -> None:
    link = tree["root"] / "escape"
    with pytest.raises(InvalidArgumentError, match=f"resolves to {tree['outside']}, outside"):
        check(field, str(link), (tree["root"],))


@pytest.mark.parametrize(("field", "check", "where"), CHECKS[:6], ids=IDS[:6])
def test_a_job_path_below_a_symlink_out_of_the_root_is_refused_though_it_does_not_exist(
    tree: dict[str, Path], field: str, check: Callable[..., None], where: str
) -> None:
    with pytest.raises(InvalidArgumentError, match="outside"):
        check(field, str(tree["root"] / "escape" / "not-yet"), (tree["root"],))


def test_a_root_that_is_itself_a_symlink_contains_what_its_target_holds(
    tree: dict[str, Path], tmp_path: Path
) -> None:
    linked_root = tmp_path / "linked-root"
    linked_root.symlink_to(tree["root"])
    assert (
        contained_path(str(linked_root / "project"), (linked_root,), field="workdir")
        == (tree["inside"])
    )


def test_without_roots_any_absolute_path_passes_but_the_text_rules_still_apply(
    tree: dict[str, Path],
) -> None:
    assert contained_path(str(tree["outside"]), (), field="workdir") == tree["outside"]
    for bad, why in [
        ("relative", "must be absolute"),
        ("/a/../b", "must not contain"),
        ("/a\x00b", "NUL"),
        ("/" + "a" * MAX_PATH_BYTES, f"longer than {MAX_PATH_BYTES} bytes"),
        ("", "is empty"),
    ]:
        with pytest.raises(InvalidArgumentError, match=why):
            contained_path(bad, (), field="workdir")


def test_a_docker_workdir_lives_in_the_container_and_is_not_held_to_the_node_roots(
    tree: dict[str, Path],
) -> None:
    spec = types_pb2.JobSpec(command=["true"], image="busybox", workdir="/workspace")
    validate_job_spec(spec, known_datasets=(), path_roots=(PurePosixPath(tree["root"]),))
    check_job_paths(spec, (tree["root"],))
    spec.workdir = "/workspace/../etc"
    with pytest.raises(InvalidArgumentError, match="must not contain"):
        validate_job_spec(spec, known_datasets=(), path_roots=(PurePosixPath(tree["root"]),))


def test_a_dataset_path_must_exist(tree: dict[str, Path]) -> None:
    with pytest.raises(InvalidArgumentError, match="does not exist on this node"):
        resolve_under_roots(str(tree["root"] / "missing"), (tree["root"],))
