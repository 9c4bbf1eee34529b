"""``job submit``'s flags for many runs and their order: ``--array``, ``--sweep``,
``--after``, ``--from FILE``; and how ``job list`` and ``job show`` word an array.

Parsing the command line stays light: protobuf is imported only when a spec is
built (``murmur --help`` imports no gRPC).
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from murmur._cli.errors import CommandError

if TYPE_CHECKING:
    from murmur.v1 import cluster_pb2, types_pb2

CONDITIONS = ("ok", "any", "failed")
"""``--after ID:CONDITION``: Slurm's afterok, afterany, afternotok."""
_CONDITION_ALIASES = {"afterok": "ok", "afterany": "any", "afternotok": "failed", "notok": "failed"}
_ARRAY = re.compile(r"([^%]*)(?:%(\d+))?")
_BATCH_ERROR = re.compile(r"job (\d+)(?: of the batch)?: ")


@dataclass(frozen=True)
class ArrayFlag:
    """``--array 0-999%4``: the indices (empty for ``%4`` alone, with ``--sweep``)
    and the most tasks running at once (0: no limit)."""

    indices: str
    max_running: int


def parse_array(text: str) -> ArrayFlag:
    """``0-999``, ``1,3,5-7``, ``0-15:4``, each with an optional ``%P``; ``%P`` alone
    limits a ``--sweep``."""
    match = _ARRAY.fullmatch(text.strip())
    if match is None or (not match.group(1) and match.group(2) is None):
        raise argparse.ArgumentTypeError(
            f"expected indices like 0-99, 1,3,5-7 or 0-15:4, with an optional %P, got {text!r}"
        )
    limit = int(match.group(2)) if match.group(2) is not None else 0
    if match.group(2) is not None and limit < 1:
        raise argparse.ArgumentTypeError(f"%P is at least 1, got {text!r}")
    return ArrayFlag(match.group(1), limit)


def parse_sweep(text: str) -> tuple[str, list[str]]:
    """``lr=1e-3,3e-4``: a parameter and its values."""
    name, sep, values = text.partition("=")
    items = [value.strip() for value in values.split(",")] if values else []
    if not sep or not name or not items or any(not item for item in items):
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,..., got {text!r}")
    return name.strip(), items


_SLURM_TASK_ID = re.compile(r"([0-9a-f]+)_([0-9]+)")


def job_id_argument(text: str) -> str:
    """A job id as typed: ``ID``, ``ID[7]`` for an array's task, or Slurm's ``ID_7``
    for the same task, which needs no quotes in a shell (unquoted, ``ID[7]`` is a
    glob pattern: zsh refuses it when no file matches, bash passes it on only then)."""
    task = _SLURM_TASK_ID.fullmatch(text)
    return f"{task.group(1)}[{int(task.group(2))}]" if task is not None else text


def parse_after(text: str) -> tuple[str, str]:
    """``ID``, ``ID:ok``, ``ID:any``, ``ID:failed`` (also Slurm's words, and ``ID[7]``
    or ``ID_7`` for a task): the job and the condition."""
    job_id, sep, condition = text.rpartition(":")
    if not sep:
        job_id, condition = text, "ok"
    job_id = job_id_argument(job_id)
    condition = _CONDITION_ALIASES.get(condition.lower(), condition.lower())
    if not job_id or condition not in CONDITIONS:
        raise argparse.ArgumentTypeError(
            f"expected ID or ID:CONDITION (ok, any, failed), got {text!r}"
        )
    return job_id, condition


def add_array_flags(parser: argparse.ArgumentParser) -> None:
    """``--array``, ``--sweep``, ``--after``, ``--from``."""
    parser.add_argument(
        "--array",
        type=parse_array,
        metavar="INDICES[%P]",
        help="one task per index (0-999, 1,3,5-7, 0-15:4), each with MURMUR_ARRAY_TASK_ID; "
        "%%P: at most P running at once. Tasks are named ID[INDEX]",
    )
    parser.add_argument(
        "--sweep",
        action="append",
        type=parse_sweep,
        default=[],
        metavar="NAME=V1,V2",
        help="an array over every combination of the values (repeatable); each task gets "
        "MURMUR_SWEEP_<NAME> and the label NAME=VALUE",
    )
    parser.add_argument(
        "--after",
        action="append",
        type=parse_after,
        default=[],
        metavar="ID[:ok|any|failed]",
        help="start only once job (or array) ID succeeded (ok, the default), ended (any) or "
        "ended otherwise (failed); repeatable. A dependency that can no longer be met "
        "ends the job",
    )
    parser.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="submit every job of FILE (JSON lines: a job spec each, as `job show --json` "
        "prints it; '-' reads stdin) in one call, all or none",
    )


def apply_array_flags(spec: types_pb2.JobSpec, args: argparse.Namespace) -> None:
    """Puts ``--array``, ``--sweep`` and ``--after`` into ``spec``."""
    from murmur.v1 import types_pb2

    array: ArrayFlag | None = args.array
    if args.sweep:
        if array is not None and array.indices:
            raise CommandError(
                "--array with --sweep takes only %P (e.g. --array %4): a sweep's tasks are "
                "its combinations, indexed 0, 1, ..."
            )
        spec.array.sweep.extend(
            types_pb2.SweepParameter(name=name, values=values) for name, values in args.sweep
        )
        spec.array.max_running = array.max_running if array is not None else 0
    elif array is not None:
        if not array.indices:
            raise CommandError("--array needs indices (e.g. 0-99%4); %P alone goes with --sweep")
        spec.array.indices = array.indices
        spec.array.max_running = array.max_running
    for job_id, condition in args.after:
        spec.after.add(job_id=job_id, condition=_condition_value(condition))


def _condition_value(condition: str) -> types_pb2.DependencyCondition.ValueType:
    from murmur.v1 import types_pb2

    return types_pb2.DependencyCondition.Value(f"DEPENDENCY_CONDITION_{condition.upper()}")


# ------------------------------------------------------------------ --from FILE


@dataclass(frozen=True)
class BatchFile:
    """The submissions of a ``--from`` file, and the line each came from."""

    name: str
    requests: list[cluster_pb2.SubmitJobRequest]
    lines: list[int]

    def located(self, message: str) -> str:
        """A refusal of the batch's job N (``job N: ...``) as the file's line."""
        match = _BATCH_ERROR.match(message)
        if match is None:
            return f"{self.name}: {message}"
        number = int(match.group(1))
        if not 1 <= number <= len(self.lines):
            return f"{self.name}: {message}"
        return f"{self.name} line {self.lines[number - 1]}: {message[match.end() :]}"


def read_batch(path: str, *, project: str) -> BatchFile:
    """The job specs of a JSON-lines file, one per line (blank lines and lines
    starting with ``#`` skipped): either a ``JobSpec`` (as ``job show --json`` prints a
    job's ``spec``) or a ``SubmitJobRequest`` (``{"spec": {...}, "idempotency_key":
    "..."}``). A job that names no project gets ``project``. A job may wait for an
    earlier or later one of the file: ``"after": [{"job_id": "@2"}]`` names the
    file's second job.

    Raises:
        CommandError: the file cannot be read, or a line is not such JSON (naming
            the line).
    """
    import sys
    import uuid

    from google.protobuf import json_format

    from murmur.v1 import cluster_pb2

    name = "stdin" if path == "-" else path
    try:
        text = sys.stdin.read() if path == "-" else Path(path).expanduser().read_text("utf-8")
    except OSError as exc:
        raise CommandError(f"{name}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{name} is not UTF-8 text") from None
    requests: list[cluster_pb2.SubmitJobRequest] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{name} line {number}: not JSON: {exc.msg}") from None
        if not isinstance(document, dict):
            raise CommandError(f"{name} line {number}: expected a JSON object (a job spec)")
        request = cluster_pb2.SubmitJobRequest()
        try:
            if "spec" in document:
                json_format.ParseDict(document, request)
            else:
                json_format.ParseDict(document, request.spec)
        except json_format.ParseError as exc:
            raise CommandError(f"{name} line {number}: {exc}") from None
        if not request.spec.project:
            request.spec.project = project
        request.idempotency_key = request.idempotency_key or str(uuid.uuid4())
        requests.append(request)
        lines.append(number)
    if not requests:
        raise CommandError(f"{name} holds no job (one JSON job spec per line)")
    return BatchFile(name, requests, lines)


# ------------------------------------------------------------------ wording


def tasks_summary(job: types_pb2.Job) -> str:
    """``4 running, 90 pending, 6 succeeded``: an array's tasks by state."""
    counts = job.array.tasks_by_state
    order = ("running", "starting", "scheduled", "pending", "succeeded", "failed", "cancelled")
    words = [f"{counts[state]} {state}" for state in order if counts.get(state)]
    words += [f"{n} {state}" for state, n in sorted(counts.items()) if state not in order and n]
    return ", ".join(words)


def is_array(job: types_pb2.Job) -> bool:
    """The record of a whole array (not one of its tasks)."""
    return job.HasField("array") and not job.array.HasField("task_index")


def is_task(job: types_pb2.Job) -> bool:
    return job.HasField("array") and job.array.HasField("task_index")
