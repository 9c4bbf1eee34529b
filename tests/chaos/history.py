"""What happened in a chaos session, as plain records, and the execution-file parser.

Three sources make a history:

- the submitter's record of every submission (:class:`Submission`): the
  idempotency key and job name it used, whether and when it was acknowledged and
  with which job id, how many attempts failed;
- the driver's record of every fault (:class:`FaultEvent`);
- the jobs' own execution files (:func:`read_executions`), written by
  :mod:`tests.chaos.job_program`, one :class:`Execution` per started process.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Submission:
    """One job the submitter meant to create (however many attempts it took)."""

    key: str
    """The idempotency key every attempt carried."""
    name: str
    """The job's name: unique per submission, so the job can be found without its id."""
    submitted_at: float
    acknowledged_at: float | None = None
    job_id: str = ""
    """Set once a node acknowledged the submission."""
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    """Why attempts failed: each one left the outcome unknown until the next."""

    @property
    def acknowledged(self) -> bool:
        return bool(self.job_id)


@dataclass(frozen=True)
class FaultEvent:
    at: float
    round: int
    action: str
    """kill | restart | partition | heal."""
    nodes: tuple[str, ...]
    detail: str = ""


@dataclass
class Execution:
    """One process that ran a job (a run's process; the same run twice would be two)."""

    job_id: str
    run_id: str
    node: str
    pid: int
    pid_start: int
    gpus: tuple[int, ...]
    started_at: float
    """From its ``start`` line: written once the interpreter has started."""
    last_seen: float
    """The latest time the process wrote anything: it surely ran until then."""
    ended_at: float | None = None
    """From its ``end`` line; None when it wrote none (killed, or still running)."""
    how: str = ""
    """ok | fail | sigterm, or empty without an ``end`` line."""
    ignored_sigterm: bool = False
    forked_at: float | None = None
    """When the kernel says the process began (``PID_START`` on the wall clock; fork
    time, 10 ms ticks rounded down): earlier than ``started_at`` by the
    interpreter's start-up, which a loaded machine can stretch."""

    @property
    def began(self) -> float:
        """The earliest the execution may have run: its fork, else its ``start`` line."""
        if self.forked_at is None:
            return self.started_at
        return min(self.started_at, self.forked_at)


def boot_wall_time() -> float:
    """The wall-clock time of boot, to the precision of two clock readings: what
    ``/proc/PID/stat`` start times count from."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def read_executions(
    results_dir: Path, *, boot_time: float | None = None
) -> tuple[list[Execution], list[str]]:
    """Every execution recorded under ``results_dir``, and the lines it could not read
    (a record is one whole line; a torn or unknown one is reported, not guessed).
    With ``boot_time`` (:func:`boot_wall_time`, read on the machine that ran the
    jobs), each execution's ``forked_at`` is set from its process start time."""
    executions: list[Execution] = []
    problems: list[str] = []
    ticks = os.sysconf("SC_CLK_TCK")
    for path in sorted(results_dir.glob("*.log")):
        found, bad = parse_execution_lines(path.read_text(errors="replace").splitlines())
        if boot_time is not None:
            for execution in found:
                execution.forked_at = boot_time + execution.pid_start / ticks
        executions.extend(found)
        problems.extend(f"{path.name}: {line}" for line in bad)
    return executions, problems


def parse_execution_lines(lines: list[str]) -> tuple[list[Execution], list[str]]:
    """Executions from one job's file (see :mod:`tests.chaos.job_program` for the format)."""
    by_pid: dict[tuple[str, int], Execution] = {}
    order: list[Execution] = []
    bad: list[str] = []
    for line in lines:
        parts = line.split()
        try:
            if parts[0] == "start" and len(parts) == 8:
                job_id, run_id, node, pid, pid_start, gpus, at = parts[1:]
                execution = Execution(
                    job_id=job_id,
                    run_id=run_id,
                    node=node,
                    pid=int(pid),
                    pid_start=int(pid_start),
                    gpus=() if gpus == "-" else tuple(int(g) for g in gpus.split(",")),
                    started_at=float(at),
                    last_seen=float(at),
                )
                by_pid[(run_id, int(pid))] = execution
                order.append(execution)
                continue
            if parts[0] in ("beat", "term") and len(parts) == 4:
                execution = by_pid[(parts[1], int(parts[2]))]
                execution.last_seen = max(execution.last_seen, float(parts[3]))
                execution.ignored_sigterm |= parts[0] == "term"
                continue
            if parts[0] == "end" and len(parts) == 5:
                execution = by_pid[(parts[1], int(parts[2]))]
                execution.ended_at = float(parts[3])
                execution.last_seen = max(execution.last_seen, execution.ended_at)
                execution.how = parts[4]
                continue
        except (KeyError, ValueError, IndexError):
            pass
        bad.append(line)
    return order, bad


def read_run_exits(data_dirs: list[Path]) -> dict[str, float]:
    """``finished_at`` of every run's ``exit.json`` on every node, by run id.

    The run's supervisor writes it after its job's process has exited (it waits
    without reaping, then records), and the daemon writes it only for a run whose
    supervisor is gone: either way a time at which the process was surely dead.
    """
    found: dict[str, float] = {}
    for data_dir in data_dirs:
        for path in data_dir.glob("runs/*/exit.json"):
            try:
                finished = float(json.loads(path.read_bytes())["finished_at"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            found[path.parent.name] = max(finished, found.get(path.parent.name, 0.0))
    return found


def to_json(records: list[Any]) -> list[dict[str, Any]]:
    return [asdict(record) for record in records]
