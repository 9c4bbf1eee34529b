"""Job arrays, sweeps, dependencies and projects: the words of a spec that make one
submission many runs, or hold a run back, or say whose experiment it is.

An array (``JobSpec.array``) is one submission of many tasks. Each task is a job
of the queue with an id of its own, ``ID[INDEX]``, and shares the array's spec: what
differs between tasks (the index, a sweep's values) is derived from the index
wherever it is needed (the run's environment when the task is sent to its node, its
labels when it is shown), so a 1,000-task array costs the state one spec, not
1,000.

- ``indices`` in Slurm's syntax: ``0-999``, ``1,3,5-7``, ``0-15:4`` (every fourth);
  the task's index is the number itself (``MURMUR_ARRAY_TASK_ID``).
- ``sweep``: one task per combination of the parameters' values, the last
  parameter varying fastest, indexed 0, 1, ...; each task has its values in its
  environment (``MURMUR_SWEEP_<NAME>``) and in its labels (``name=value``).
- ``max_running``: Slurm's ``%P``, at most that many tasks running at once (the
  leader holds the others back).

A dependency (``JobSpec.after``) names a job, an array (all its tasks) or a task,
and a condition: ``ok`` (it succeeded; for an array every task did), ``any`` (it
ended), ``failed`` (it ended other than succeeded; for an array, once all ended, at
least one did not succeed).

Pure: no I/O; the checks raise :class:`InvalidArgumentError` naming the field.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Sequence

from murmur.node.errors import InvalidArgumentError
from murmur.v1 import types_pb2

MAX_ARRAY_TASKS = 10_000
"""Tasks of one array (Slurm's MaxArraySize is 1,001 by default)."""
MAX_ARRAY_INDEX = 1_000_000
MAX_SWEEP_PARAMETERS = 16
MAX_SWEEP_VALUE_BYTES = 63
"""A sweep's value is also a label's value (Kubernetes' limit)."""
MAX_DEPENDENCIES = 64
MAX_PROJECT_BYTES = 63

OK = "ok"
ANY = "any"
FAILED = "failed"
CONDITIONS = (OK, ANY, FAILED)
"""The words of ``--after ID:CONDITION``, Slurm's afterok, afterany, afternotok."""

_CONDITION_WORDS: dict[int, str] = {
    types_pb2.DEPENDENCY_CONDITION_UNSPECIFIED: OK,
    types_pb2.DEPENDENCY_CONDITION_OK: OK,
    types_pb2.DEPENDENCY_CONDITION_ANY: ANY,
    types_pb2.DEPENDENCY_CONDITION_FAILED: FAILED,
}
CONDITION_VALUES = {
    OK: types_pb2.DEPENDENCY_CONDITION_OK,
    ANY: types_pb2.DEPENDENCY_CONDITION_ANY,
    FAILED: types_pb2.DEPENDENCY_CONDITION_FAILED,
}

_ITEM = re.compile(r"(\d+)(?:-(\d+)(?::(\d+))?)?")
_TASK_ID = re.compile(r"(.+)\[(\d+)\]")
_SWEEP_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_JOB_REF = re.compile(r"[A-Za-z0-9_~-]{1,64}(?:\[\d{1,7}\])?")
_BATCH_REF = re.compile(r"@([1-9]\d{0,4})")
_PROJECT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")


def _fail(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(message)


# ------------------------------------------------------------------ task ids


def task_id(array_id: str, index: int) -> str:
    """``ID[INDEX]``: how a task is named everywhere."""
    return f"{array_id}[{index}]"


def split_task_id(job_id: str) -> tuple[str, int] | None:
    """The array id and index of a task's id; None for any other id."""
    if not job_id.endswith("]"):
        return None
    match = _TASK_ID.fullmatch(job_id)
    if match is None:
        return None
    return match.group(1), int(match.group(2))


def task_index(job_id: str) -> int:
    """A task's index in its array, by which its tasks go (they share one submit
    order, and their ids sort ``ID[10]`` before ``ID[2]``); 0 for any other job."""
    split = split_task_id(job_id)
    return split[1] if split is not None else 0


# ------------------------------------------------------------------ indices


@functools.lru_cache(maxsize=64)
def parse_indices(text: str) -> tuple[int, ...]:
    """The indices ``text`` names, ascending.

    Raises:
        ValueError: not Slurm's syntax, an index twice, more than
            ``MAX_ARRAY_TASKS`` or one above ``MAX_ARRAY_INDEX``.
    """
    found: set[int] = set()
    for item in text.split(","):
        match = _ITEM.fullmatch(item.strip())
        if match is None:
            raise ValueError(
                f"{item.strip()!r} is not an index, a range (0-9) or a range with a step (0-9:2)"
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        step = int(match.group(3)) if match.group(3) is not None else 1
        if last < first:
            raise ValueError(f"{item.strip()!r} ends before it starts")
        if step < 1:
            raise ValueError(f"{item.strip()!r} has a step below 1")
        if last > MAX_ARRAY_INDEX:
            raise ValueError(f"an index is at most {MAX_ARRAY_INDEX}")
        if (last - first) // step + 1 + len(found) > MAX_ARRAY_TASKS:
            raise ValueError(f"an array has at most {MAX_ARRAY_TASKS} tasks")
        for index in range(first, last + 1, step):
            if index in found:
                raise ValueError(f"index {index} is named twice")
            found.add(index)
    return tuple(sorted(found))


def task_indices(array: types_pb2.ArraySpec) -> Sequence[int]:
    """Every task's index, ascending: the named indices, or a sweep's 0, 1, ..."""
    if array.sweep:
        return range(sweep_size(array))
    return parse_indices(array.indices)


def task_count(array: types_pb2.ArraySpec) -> int:
    return len(task_indices(array))


def is_array(spec: types_pb2.JobSpec) -> bool:
    return spec.HasField("array")


# ------------------------------------------------------------------ sweeps


def sweep_size(array: types_pb2.ArraySpec) -> int:
    return math.prod(len(parameter.values) for parameter in array.sweep)


def sweep_values(array: types_pb2.ArraySpec, index: int) -> list[tuple[str, str]]:
    """The (name, value) of each sweep parameter for task ``index`` (the last
    parameter varies fastest); empty for an array without a sweep."""
    values: list[tuple[str, str]] = []
    for parameter in reversed(array.sweep):
        index, which = divmod(index, len(parameter.values))
        values.append((parameter.name, parameter.values[which]))
    values.reverse()
    return values


def sweep_variable(name: str) -> str:
    """``MURMUR_SWEEP_LR`` for ``lr``."""
    return "MURMUR_SWEEP_" + name.upper()


# ------------------------------------------------------------------ a task's view


def task_labels(spec: types_pb2.JobSpec, index: int) -> list[tuple[str, str]]:
    """The labels task ``index`` has beyond its array's: its sweep values."""
    return sweep_values(spec.array, index) if spec.array.sweep else []


def task_environment(array_id: str, spec: types_pb2.JobSpec, index: int) -> dict[str, str]:
    """What Murmur adds to a task's environment: its index, the array's task count
    and id (as Slurm's ``SLURM_ARRAY_*``), and its sweep values."""
    env = {
        "MURMUR_ARRAY_JOB_ID": array_id,
        "MURMUR_ARRAY_TASK_ID": str(index),
        "MURMUR_ARRAY_TASK_COUNT": str(task_count(spec.array)),
    }
    for name, value in task_labels(spec, index):
        env[sweep_variable(name)] = value
    return env


def spec_to_run(job_id: str, spec: types_pb2.JobSpec) -> types_pb2.JobSpec:
    """What a job's node is sent to run: ``spec`` itself, or for a task a copy with
    its ``task_environment`` (and its sweep labels); with a project, also
    ``MURMUR_PROJECT``, so what the run submits in turn belongs to it too."""
    split = split_task_id(job_id) if spec.HasField("array") else None
    if split is None and not spec.project:
        return spec
    run = types_pb2.JobSpec()
    run.CopyFrom(spec)
    if split is not None:
        array_id, index = split
        run.env.update(task_environment(array_id, spec, index))
        run.labels.update(task_labels(spec, index))
    if spec.project:
        run.env["MURMUR_PROJECT"] = spec.project
    return run


# ------------------------------------------------------------------ dependencies


def condition_word(condition: int) -> str:
    """``ok``, ``any`` or ``failed`` (an unknown value reads as ``ok``)."""
    return _CONDITION_WORDS.get(condition, OK)


def batch_reference(job_id: str) -> int | None:
    """The 1-based position a dependency ``@N`` names in its batch; None otherwise."""
    match = _BATCH_REF.fullmatch(job_id)
    return int(match.group(1)) if match is not None else None


# ------------------------------------------------------------------ checks


def check_array(spec: types_pb2.JobSpec) -> None:
    """Checks ``spec.array`` (when set).

    Raises:
        InvalidArgumentError: indices not in Slurm's syntax, a sweep with a bad name
            or value, both indices and a sweep, too many tasks, a multi-node array.
    """
    if not spec.HasField("array"):
        return
    array = spec.array
    if array.sweep and array.indices:
        raise _fail(
            "an array has indices or a sweep, not both (a sweep's tasks are indexed 0, 1, ...)"
        )
    if array.sweep:
        _check_sweep(spec)
    elif not array.indices:
        raise _fail("an array needs indices (e.g. 0-99) or a sweep")
    else:
        try:
            parse_indices(array.indices)
        except ValueError as exc:
            raise _fail(f"array indices {_shown(array.indices)}: {exc}") from None
    if array.max_running > MAX_ARRAY_TASKS:
        raise _fail(f"array max running (%P) must be at most {MAX_ARRAY_TASKS}")


def _check_sweep(spec: types_pb2.JobSpec) -> None:
    sweep = spec.array.sweep
    if len(sweep) > MAX_SWEEP_PARAMETERS:
        raise _fail(f"a sweep has at most {MAX_SWEEP_PARAMETERS} parameters")
    names: set[str] = set()
    for parameter in sweep:
        name = parameter.name
        if not _SWEEP_NAME.fullmatch(name):
            raise _fail(
                f"sweep parameter {_shown(name)}: a name is a letter, then letters, digits "
                "or _ (it names MURMUR_SWEEP_<NAME> and a label)"
            )
        if name.lower() in names:
            raise _fail(f"sweep parameter {name} is given twice")
        names.add(name.lower())
        if name in spec.labels:
            raise _fail(f"label {name} is set by the sweep: give it once")
        if not parameter.values:
            raise _fail(f"sweep parameter {name} has no values")
        if len(set(parameter.values)) != len(parameter.values):
            raise _fail(f"sweep parameter {name} names a value twice")
        for value in parameter.values:
            if len(value) > MAX_SWEEP_VALUE_BYTES or not _LABEL_VALUE.fullmatch(value):
                raise _fail(
                    f"sweep {name}={_shown(value)}: a value is also a label's: at most "
                    f"{MAX_SWEEP_VALUE_BYTES} letters, digits, '-', '_', '.', starting and "
                    "ending with a letter or digit"
                )
    size = 1
    for parameter in sweep:
        size *= len(parameter.values)
        if size > MAX_ARRAY_TASKS:
            raise _fail(f"the sweep makes more than {MAX_ARRAY_TASKS} tasks")


def check_dependencies(spec: types_pb2.JobSpec, *, batch_size: int = 0) -> None:
    """Checks ``spec.after``: job ids in their form, known conditions, each job
    once. ``@N`` (the batch's Nth job) only within a batch of ``batch_size``.

    Raises:
        InvalidArgumentError: naming the dependency.
    """
    if len(spec.after) > MAX_DEPENDENCIES:
        raise _fail(f"a job waits for at most {MAX_DEPENDENCIES} others")
    seen: set[str] = set()
    for dependency in spec.after:
        job_id = dependency.job_id
        reference = batch_reference(job_id)
        if reference is not None:
            if not batch_size:
                raise _fail(f"after {job_id}: @N names the Nth job of a batch (--from FILE)")
            if reference > batch_size:
                raise _fail(f"after {job_id}: the batch has {batch_size} jobs")
        elif not _JOB_REF.fullmatch(job_id):
            raise _fail(f"after {_shown(job_id)}: not a job id (ID, or ID[INDEX] for a task)")
        if dependency.condition not in _CONDITION_WORDS:
            raise _fail(f"after {job_id}: unknown condition {dependency.condition}")
        if job_id in seen:
            raise _fail(f"after {job_id}: the job is named twice")
        seen.add(job_id)


def check_project(name: str) -> None:
    """Refuses a project name that is not a plain word.

    Raises:
        InvalidArgumentError: empty parts, other characters, too long.
    """
    if name and (len(name) > MAX_PROJECT_BYTES or not _PROJECT.fullmatch(name)):
        raise _fail(
            f"project {_shown(name)}: letters, digits, '.', '_' or '-', at most "
            f"{MAX_PROJECT_BYTES}, starting and ending with a letter or digit"
        )


def _shown(value: str, limit: int = 64) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def iter_task_ids(array_id: str, array: types_pb2.ArraySpec) -> Iterator[str]:
    """Every task's id, by index."""
    for index in task_indices(array):
        yield task_id(array_id, index)
