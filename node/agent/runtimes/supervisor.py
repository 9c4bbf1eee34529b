"""The per-run supervisor: a small process that sits between the daemon and one job.

The process runtime's fork server (:mod:`murmur.node.agent.runtimes.forkserver`) forks it,
already loaded, into a session of its own; if the fork server fails, the runtime
starts it as ``python -S -P -m murmur.node.agent.runtimes.supervisor RUN_DIR``. It reads
``launch.json``, starts the job as its owner's Unix account (never root unless the
node allows it; :mod:`murmur.node.agent.runtimes.accounts`) in a process group of
its own (in the run's cgroup, :mod:`murmur.node.agent.runtimes.run_cgroup`, when the
job has limits; with its datasets read-only,
:mod:`murmur.node.agent.runtimes.run_namespace`), pumps the job's stdout and stderr
into the run's log, forwards SIGTERM to the job, and records how the job ended in
``exit.json`` before it exits. Given STARTED_FD (the write end of the runtime's
pipe), it writes a byte there once ``child.json`` is written, so the
runtime learns that the job runs without polling for it.

Why a process of its own: the daemon may be killed (kill -9, out of memory, an
upgrade) while jobs run. A job whose parent was the daemon would be reparented
to init, which reaps it and forgets its exit status, and its output pipes would
break. The supervisor outlives the daemon, so output keeps reaching the disk and
the exit code is on disk when the daemon comes back. For the same reason it enforces
the node's lease from the leader (``lease.json``, :mod:`murmur.node.agent.runtimes.lease_file`):
a daemon that was killed cannot stop its runs when the lease lapses, and the leader
re-places their jobs soon after.

It imports only the standard library, :mod:`murmur.node.agent.runtimes.run_files`,
:mod:`murmur.node.agent.runtimes.run_cgroup`, :mod:`murmur.node.agent.runtimes.run_log`,
:mod:`murmur.node.agent.runtimes.run_namespace`,
:mod:`murmur.node.agent.runtimes.lease_file` and :mod:`murmur.node.agent.runtimes.procfs`
(and the ``murmur`` package, whose names load lazily): every supervisor
is a copy of the fork server, which imports it, and a fresh one (the fallback)
would pay any heavy import before its job could start.

The files in RUN_DIR, the contract with :mod:`murmur.node.agent.runtimes.process`, are
listed in :mod:`murmur.node.agent.runtimes.run_files`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from murmur.node.agent.runtimes.lease_file import read_lease
from murmur.node.agent.runtimes.procfs import process_start_time
from murmur.node.agent.runtimes.run_cgroup import enter_run_cgroup
from murmur.node.agent.runtimes.run_files import (
    CHILD_FILE,
    EXIT_FILE,
    LAUNCH_FILE,
    LOG_DIR,
    SUPERVISOR_FILE,
    Launch,
    read_json,
    write_json_atomic,
)
from murmur.node.agent.runtimes.run_log import RunLogWriter, Stream
from murmur.node.agent.runtimes.run_namespace import make_read_only

MAX_LINE_BYTES = 256 * 1024
"""Output without a line break is cut here, so a runaway line cannot eat the supervisor's memory."""

DRAIN_TIMEOUT_SECONDS = 5.0
"""How long to wait for the output pipes after the job ended. A process that left
the job's group (setsid) may hold them open; its output is then not captured."""

LEASE_CHECK_SECONDS = 1.0
"""How often the supervisor reads ``lease.json``."""

_LINE_END = re.compile(rb"\r\n|\n|\r")


def describe_exit(returncode: int) -> tuple[int, str]:
    """Exit code and reason from a ``Popen.returncode`` (negative: the signal that
    killed it; shells report that as 128 + the signal number, and so do we)."""
    if returncode >= 0:
        return returncode, f"exited with code {returncode}"
    number = -returncode
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return 128 + number, f"killed by signal {name}"


def describe_spawn_error(exc: OSError, launch: Launch) -> str:
    """A reason the user can act on, from the error of starting the job."""
    program = launch.command()[0]
    on_workdir = exc.filename == launch.workdir
    if isinstance(exc, FileNotFoundError):
        if on_workdir:
            return f"working directory not found: {launch.workdir}"
        return f"command not found: {program}"
    if isinstance(exc, NotADirectoryError) and on_workdir:
        return f"working directory is not a directory: {launch.workdir}"
    if isinstance(exc, PermissionError):
        if on_workdir:
            return f"working directory not accessible: {launch.workdir}"
        return f"permission denied: cannot execute {program}"
    return f"cannot start {program}: {exc.strerror or exc}"


class LineSplitter:
    """Cuts a byte stream into lines at ``\\n``, ``\\r\\n`` and a lone ``\\r``.

    A lone ``\\r`` ends a line too: progress bars (tqdm) redraw with it and never
    print ``\\n`` until they finish, and their progress should reach the log
    while it happens. Empty pieces between two ``\\r`` are dropped; empty lines
    ended by ``\\n`` are kept.
    """

    def __init__(self, max_bytes: int = MAX_LINE_BYTES) -> None:
        self._pending = bytearray()
        self._max_bytes = max_bytes

    def feed(self, data: bytes) -> list[bytes]:
        self._pending += data
        lines = []
        start = 0
        for match in _LINE_END.finditer(self._pending):
            if match.group() == b"\r" and match.end() == len(self._pending):
                break  # maybe the first half of "\r\n": wait for the next byte
            line = bytes(self._pending[start : match.start()])
            if line or match.group() != b"\r":
                lines.append(line)
            start = match.end()
        del self._pending[:start]
        while len(self._pending) > self._max_bytes:
            lines.append(bytes(self._pending[: self._max_bytes]))
            del self._pending[: self._max_bytes]
        return lines

    def finish(self) -> list[bytes]:
        rest = bytes(self._pending).rstrip(b"\r")
        self._pending.clear()
        return [rest] if rest else []


class _SharedLog:
    """The run's log, written by two pump threads and the main thread.

    A full disk must not stop the pumps: a job whose pipe nobody reads blocks
    forever. Lines that cannot be written are counted and dropped.
    """

    def __init__(self, writer: RunLogWriter) -> None:
        self._writer = writer
        self._lock = threading.Lock()
        self.dropped = 0

    def write(self, stream: Stream, text: str, *, at: float | None = None) -> None:
        with self._lock:
            try:
                self._writer.write(stream, text, at=at)
            except (OSError, ValueError):
                self.dropped += 1

    def close(self) -> None:
        with self._lock:
            self._writer.close()


def _pump(pipe: Any, stream: Stream, log: _SharedLog) -> None:
    """Copies one of the job's pipes into the log, line by line, until EOF."""
    splitter = LineSplitter()
    fd = pipe.fileno()
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        now = time.time()
        for line in splitter.feed(data):
            log.write(stream, line.decode("utf-8", errors="replace"), at=now)
    for line in splitter.finish():
        log.write(stream, line.decode("utf-8", errors="replace"))
    pipe.close()


class Supervisor:
    """Runs one job from its run directory; see the module docstring."""

    def __init__(self, run_dir: Path, *, started_fd: int | None = None) -> None:
        """
        Args:
            run_dir: the run's directory (``launch.json`` in it).
            started_fd: the write end of the runtime's started pipe: one byte once
                the job runs, then closed (end-of-file alone: the supervisor exited).
        """
        self._run_dir = run_dir
        self._started_fd = started_fd
        self._job: subprocess.Popen[bytes] | None = None
        self._job_ended = False
        self._stop_requested = False
        self._ended = threading.Event()
        """Set with ``_job_ended``, for the lease thread to wait on."""
        self._reap_lock = threading.Lock()
        """Held by the lease thread while it signals the job's group, and by the main
        thread when it marks the job ended, before it reaps the job: after that the
        group's number may be reused, and nothing signals it any more."""
        self._lease_reason = ""
        """Set once the lease expired and the supervisor stopped the job."""

    def run(self) -> int:
        launch = Launch.from_json(_required_json(self._run_dir / LAUNCH_FILE))
        write_json_atomic(
            self._run_dir / SUPERVISOR_FILE,
            {"pid": os.getpid(), "start_time": process_start_time(os.getpid())},
        )
        signal.signal(signal.SIGTERM, self._on_sigterm)
        log = _SharedLog(RunLogWriter(self._run_dir / LOG_DIR))
        try:
            self._supervise(launch, log)
        except BaseException as exc:
            # Never leave a job running unsupervised, nor a run without an exit.
            self._kill_job()
            if not (self._run_dir / EXIT_FILE).exists():
                self._finish(None, f"lost: the run's supervisor failed ({exc!r})")
            raise
        finally:
            log.close()
        return 0

    def _supervise(self, launch: Launch, log: _SharedLog) -> None:
        if self._stop_requested:
            self._finish(None, "stopped before it started")
            return
        try:
            read_only_note = make_read_only(launch.readonly_paths)
        except OSError as exc:
            reason = f"could not make the datasets read-only for the job: {exc.strerror or exc}"
            log.write("system", reason)
            self._finish(None, reason)
            return
        if read_only_note:
            log.write("system", read_only_note)
        cgroup, not_enforced = enter_run_cgroup(launch)
        if not_enforced:
            log.write("system", not_enforced)
        try:
            job = self._spawn(launch)
        except OSError as exc:
            if cgroup is not None:
                cgroup.leave()
                cgroup.remove()
            reason = describe_spawn_error(exc, launch)
            log.write("system", reason)
            self._finish(None, reason)
            return
        self._job = job
        if cgroup is not None and (stuck := cgroup.leave()):
            log.write("system", stuck)
        write_json_atomic(
            self._run_dir / CHILD_FILE,
            {"pid": job.pid, "pgid": job.pid, "start_time": process_start_time(job.pid)},
        )
        self._announce_started()
        log.write("system", f"started pid {job.pid}")
        if self._stop_requested:
            self._signal_job(signal.SIGTERM)
        pumps = [
            threading.Thread(target=_pump, args=(job.stdout, "stdout", log), daemon=True),
            threading.Thread(target=_pump, args=(job.stderr, "stderr", log), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        threading.Thread(target=self._enforce_lease, args=(log,), daemon=True).start()
        # Wait without reaping: while the job is a zombie its pid (the group's
        # number) cannot be reused, so killing what is left of its group is safe.
        os.waitid(os.P_PID, job.pid, os.WEXITED | os.WNOWAIT)
        with self._reap_lock:
            self._job_ended = True
        self._ended.set()
        # A job is over when its main process is; what it left behind in its
        # group would hold GPUs and the output pipes.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pid, signal.SIGKILL)
        returncode = job.wait()
        exit_code, reason = describe_exit(returncode)
        if self._lease_reason:
            reason = self._lease_reason
        if cgroup is not None:
            if returncode == -signal.SIGKILL and cgroup.oom_kills() > 0:
                reason += f" (out of memory: limit {launch.memory_bytes} bytes)"
            cgroup.remove()  # also kills what left the group but not the cgroup
        for pump in pumps:
            pump.join(DRAIN_TIMEOUT_SECONDS)
        if any(pump.is_alive() for pump in pumps):
            log.write(
                "system",
                "output after the exit is not captured: a process that left "
                "the job's process group still holds its output",
            )
        if log.dropped:
            log.write("system", f"{log.dropped} output lines lost: the log could not be written")
        log.write("system", reason)
        self._finish(exit_code, reason)

    def _enforce_lease(self, log: _SharedLog) -> None:
        """Stops the job once ``lease.json`` says the lease has passed: SIGTERM, then
        SIGKILL after the lease's grace (a thread of its own; the main thread waits
        for the job)."""
        while not self._ended.wait(LEASE_CHECK_SECONDS):
            lease = read_lease(self._run_dir)
            if lease is None or time.time() < lease.expires_at:
                continue
            self._lease_reason = (
                f"lost: no word from a leader for {lease.lease_seconds:g} s (lease expired); "
                "stopped by the run's supervisor"
            )
            log.write("system", self._lease_reason)
            self._signal_job_locked(signal.SIGTERM)
            if not self._ended.wait(lease.grace_seconds):
                self._signal_job_locked(signal.SIGKILL)
            return

    def _signal_job_locked(self, signum: signal.Signals) -> None:
        # Not in the SIGTERM handler: it runs in the main thread, which may hold the lock.
        with self._reap_lock:
            self._signal_job(signum)

    def _spawn(self, launch: Launch) -> subprocess.Popen[bytes]:
        """Starts the job as the launch's account: its groups (and no others: a
        root supervisor's supplementary groups would otherwise leak into the job),
        gid, then uid, after which nothing of root is left; umask 022 as a login
        would give, not the daemon's private 077."""
        account: dict[str, Any] = {}
        if launch.uid is not None:
            account = {
                "user": launch.uid,
                "group": launch.gid,
                "extra_groups": list(launch.groups),
            }
        return subprocess.Popen(
            launch.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=launch.workdir,
            env=launch.env,
            start_new_session=True,
            close_fds=True,
            umask=0o022,
            **account,
        )

    def _announce_started(self) -> None:
        """Tells the runtime the job runs (``child.json`` is written): it waits on the
        pipe rather than polling. Nobody listening (the daemon died) is no error."""
        if self._started_fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._started_fd, b"s")
        with contextlib.suppress(OSError):
            os.close(self._started_fd)
        self._started_fd = None

    def _finish(self, exit_code: int | None, reason: str) -> None:
        write_json_atomic(
            self._run_dir / EXIT_FILE,
            {"exit_code": exit_code, "reason": reason, "finished_at": time.time()},
        )

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes (maybe inside a log
        # write): it only forwards the signal, it writes nothing.
        self._stop_requested = True
        self._signal_job(signal.SIGTERM)

    def _signal_job(self, signum: signal.Signals) -> None:
        if self._job is not None and not self._job_ended:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._job.pid, signum)

    def _kill_job(self) -> None:
        if self._job is not None and self._job.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._job.pid, signal.SIGKILL)
            self._job.wait()


def _required_json(path: Path) -> dict[str, Any]:
    data = read_json(path)
    if data is None:
        raise SystemExit(f"supervisor: {path} is missing or damaged")
    return data


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) not in (1, 2) or (len(arguments) == 2 and not arguments[1].isdigit()):
        print(
            "usage: python -m murmur.node.agent.runtimes.supervisor RUN_DIR [STARTED_FD]",
            file=sys.stderr,
        )
        return 2
    run_dir = Path(arguments[0]).resolve()
    started_fd = int(arguments[1]) if len(arguments) == 2 else None
    os.chdir("/")  # hold no directory busy; the job gets its own working directory
    return Supervisor(run_dir, started_fd=started_fd).run()


if __name__ == "__main__":
    sys.exit(main())
