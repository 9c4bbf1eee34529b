"""The files in a process run's directory: the contract between the process runtime
(:mod:`murmur.node.agent.runtimes.process`) and the run's supervisor
(:mod:`murmur.node.agent.runtimes.supervisor`), and how either side writes and reads them.

    launch.json       what to run (``Launch``), written by the runtime first
    supervisor.json   {"pid", "start_time"} of the supervisor, its first write
    child.json        {"pid", "pgid", "start_time"} of the job, once it runs
    exit.json         {"exit_code", "reason", "finished_at"}, its last write;
                      once it exists the log is complete
    lease.json        {"expires_at", "lease_seconds", "grace_seconds"}, written by
                      the job manager on every renewal; once passed the job is
                      stopped (no file: no lease to enforce;
                      :mod:`murmur.node.agent.runtimes.lease_file`)
    supervisor.log    the supervisor's own stdout and stderr (tracebacks)
    log/              the job's output, in :mod:`murmur.node.agent.runtimes.run_log` format

The docker runtime writes ``exit.json`` and its lease guard's record with the same
helpers, so every run's files survive a crash of their writer whole or not at all.

It imports only the standard library: the supervisor imports it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAUNCH_FILE = "launch.json"
SUPERVISOR_FILE = "supervisor.json"
CHILD_FILE = "child.json"
EXIT_FILE = "exit.json"
SUPERVISOR_LOG = "supervisor.log"
LOG_DIR = "log"


@dataclass(frozen=True)
class Launch:
    """What the supervisor runs: ``launch.json``, written by the process runtime."""

    run_id: str
    argv: tuple[str, ...]
    shell: bool
    """Run ``" ".join(argv)`` through ``/bin/sh -c`` (the user asked for a shell)."""
    env: dict[str, str]
    """The job's whole environment; nothing of the supervisor's own leaks into it."""
    workdir: str
    memory_bytes: int | None
    cpus: float | None
    uid: int | None = None
    """The account the job runs as (``None``: the supervisor's own, as before)."""
    gid: int | None = None
    groups: tuple[int, ...] = ()
    """The account's groups, its primary one included."""
    readonly_paths: tuple[str, ...] = ()
    """Datasets: bind-mounted read-only over themselves in the job's mount namespace,
    so the job cannot change them even where its account could."""

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "argv": list(self.argv),
            "shell": self.shell,
            "env": self.env,
            "workdir": self.workdir,
            "memory_bytes": self.memory_bytes,
            "cpus": self.cpus,
            "uid": self.uid,
            "gid": self.gid,
            "groups": list(self.groups),
            "readonly_paths": list(self.readonly_paths),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Launch:
        return cls(
            run_id=str(data["run_id"]),
            argv=tuple(str(part) for part in data["argv"]),
            shell=bool(data["shell"]),
            env={str(key): str(value) for key, value in data["env"].items()},
            workdir=str(data["workdir"]),
            memory_bytes=None if data["memory_bytes"] is None else int(data["memory_bytes"]),
            cpus=None if data["cpus"] is None else float(data["cpus"]),
            # Absent from the launch files of runs started by older versions.
            uid=None if data.get("uid") is None else int(data["uid"]),
            gid=None if data.get("gid") is None else int(data["gid"]),
            groups=tuple(int(group) for group in data.get("groups", ())),
            readonly_paths=tuple(str(path) for path in data.get("readonly_paths", ())),
        )

    def command(self) -> list[str]:
        if self.shell:
            return ["/bin/sh", "-c", " ".join(self.argv)]
        return list(self.argv)


def write_json_atomic(path: Path, data: dict[str, Any], *, mode: int = 0o644) -> None:
    """Writes ``path`` so that a reader sees the old file or the whole new one,
    even if the writer is killed or the machine loses power half way."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, json.dumps(data).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_json(path: Path) -> dict[str, Any] | None:
    """The object in ``path``, or None if it is missing or damaged."""
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return data if isinstance(data, dict) else None
