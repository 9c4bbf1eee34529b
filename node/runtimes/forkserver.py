"""The supervisor fork server: one long-lived process that forks a ready supervisor per run.

Starting a supervisor as a fresh interpreter (``python -m node.runtimes.supervisor``)
costs 40-60 ms of CPU per run: interpreter start, ``site`` and the supervisor's
imports. On a busy node that is most of the gap between one run ending and the
next one starting. The fork server pays that once: it is started by the process
runtime as ``python -S -P -m node.runtimes.forkserver``, imports the supervisor,
and then, per run, forks a child that *is* a fresh supervisor (about 1 ms).

The guarantees of the per-run supervisor are unchanged, because each run still
gets a process of its own:

- The child calls ``setsid`` and holds nothing of the server's but the
  supervisor code: it outlives the server and the daemon, as before.
- The server is single-threaded, so forking it is safe (nothing holds a lock
  on another thread's behalf at the fork).
- The daemon learns the child's (pid, start time) before the child does
  anything: the server writes the reply first, and only then tells the child
  to go on (a byte on a pipe of its own). A child whose server died before
  that reads end-of-file and exits without touching the run. So when a
  request fails, no supervisor of that run will ever run, and the runtime can
  start one another way without starting the run twice.
- The start time is read by the server while the child is still its
  unreaped child, so it is the child's, not a reused pid's.
- The server reaps its children (the supervisors) as they exit, driven by
  SIGCHLD; once the server is gone they are reparented and reaped by init,
  exactly as supervisors whose daemon was killed.
- The server exits as soon as its requests pipe reaches end-of-file: when the
  daemon closes it, exits, or is killed.

Protocol, one JSON object per line over two pipes (fds ``REQUESTS_FD`` and
``REPLIES_FD`` in the server): the runtime writes ``{"run_dir": PATH}``, the
server answers ``{"pid": N, "start_time": T}`` or ``{"error": TEXT}``. One
request at a time.

Standard library only, plus :mod:`node.runtimes.supervisor` (which the server
imports once, so that the children need to import nothing).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from node.runtimes import supervisor
from node.runtimes.procfs import process_start_time

REQUESTS_FD = 3
"""The server reads requests from this fd (the read end of the runtime's pipe)."""
REPLIES_FD = 4
"""The server writes replies to this fd (the write end of the runtime's pipe)."""

REPLY_TIMEOUT_SECONDS = 10.0
"""How long a request may wait for its reply, the server's own start included."""

RETRY_AFTER_SECONDS = 30.0
"""After a failure the runtime starts supervisors directly for this long, so a server
that cannot start does not cost every run a failed attempt."""

FORKSERVER_LOG = "forkserver.log"
"""The server's own stdout and stderr, in the runs directory (tracebacks only)."""


class ForkServerError(Exception):
    """The fork server did not start a supervisor for the request, and never will:
    the caller may start one by other means."""


# -- the server -----------------------------------------------------------------


def _reply(data: dict[str, Any]) -> None:
    os.write(REPLIES_FD, json.dumps(data).encode("utf-8") + b"\n")


def _name_process(name: str) -> None:
    """Sets the name ``top`` and ``ps -o comm`` show (15 bytes at most). Supervisors
    share the server's command line, so this is how an operator tells them apart."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write(name)


def _reap_children() -> None:
    """Collects every exited child, so no supervisor stays a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _become_supervisor(run_dir: str, go_fd: int, server_fds: tuple[int, ...]) -> None:
    """The forked child: waits for the go, then runs the supervisor. Never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in server_fds:  # above all the replies pipe: its reader waits for EOF
            os.close(fd)
        if not os.read(go_fd, 1):
            code = 0  # the server died before the runtime learned our pid: not ours to run
            return
        os.close(go_fd)
        _name_process("murmur-run")
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        log = os.open(
            os.path.join(run_dir, supervisor.SUPERVISOR_LOG),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o600,
        )
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        code = supervisor.main([run_dir])
    except SystemExit as exc:
        # What the interpreter would do with it at the top level.
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        # Not the server's loop, nor its clean-up: this process is a supervisor.
        os._exit(code)


def _fork_supervisor(run_dir: str, wake_fds: tuple[int, int]) -> None:
    """Answers one request: forks the supervisor, replies, then lets it go on."""
    sys.stdout.flush()
    sys.stderr.flush()
    go_read, go_write = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(go_read)
        os.close(go_write)
        _reply({"error": f"cannot fork a supervisor: {exc.strerror or exc}"})
        return
    if pid == 0:
        _become_supervisor(run_dir, go_read, (REQUESTS_FD, REPLIES_FD, go_write, *wake_fds))
    os.close(go_read)
    try:
        # Our unreaped child (reaping happens only in the main loop): this is its
        # start time, not a reused pid's.
        _reply({"pid": pid, "start_time": process_start_time(pid)})
        os.write(go_write, b"g")
    finally:
        os.close(go_write)  # without the go byte: end-of-file, and the child exits


def serve() -> None:
    """The server's loop: one request at a time until the requests pipe closes."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)

    def on_child_exit(signum: int, frame: FrameType | None) -> None:
        """Only wakes the loop (through the wakeup fd); the loop reaps, so that a
        child is never reaped between its fork and the reading of its start time."""

    signal.signal(signal.SIGCHLD, on_child_exit)
    pending = b""
    while True:
        readable, _, _ = select.select([REQUESTS_FD, wake_read], [], [])
        if wake_read in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_read, 4096):
                    pass
            _reap_children()
        if REQUESTS_FD not in readable:
            continue
        data = os.read(REQUESTS_FD, 65536)
        if not data:
            return  # the runtime closed its end, exited or was killed
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            try:
                run_dir = str(json.loads(line)["run_dir"])
            except (ValueError, KeyError, TypeError) as exc:
                _reply({"error": f"bad request: {exc!r}"})
                continue
            _fork_supervisor(run_dir, (wake_read, wake_write))


def main() -> int:
    os.chdir("/")  # hold no directory busy
    _name_process("murmur-forksrv")
    with contextlib.suppress(BrokenPipeError):  # the runtime is gone: nobody to answer
        serve()
    return 0


# -- the runtime's side ---------------------------------------------------------


class ForkServer:
    """The process runtime's handle on its fork server: starts it on first use,
    sends it requests (thread-safe: one at a time), and retires it on failure."""

    def __init__(
        self,
        *,
        python: str,
        package_root: Path,
        log_path: Path,
        reply_timeout_seconds: float = REPLY_TIMEOUT_SECONDS,
    ) -> None:
        """
        Args:
            python: the interpreter that runs the server.
            package_root: the directory holding the ``node`` package.
            log_path: where the server's own output goes.
            reply_timeout_seconds: how long a request waits for its reply before
                the server is taken for hung and killed.
        """
        self._python = python
        self._reply_timeout = reply_timeout_seconds
        self._package_root = package_root
        self._log_path = log_path
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._requests = -1
        self._replies = -1
        self._pending = b""
        self._retry_at = 0.0

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs (for tests and logs)."""
        return self._pid

    def warm(self) -> None:
        """Starts the server now, unless it runs or failed recently, so that the
        first run does not wait for its start. A failure shows at the next spawn."""
        with self._lock:
            if self._pid is None and time.monotonic() >= self._retry_at:
                with contextlib.suppress(ForkServerError):
                    self._start()

    def spawn(self, run_dir: Path) -> tuple[int, int | None]:
        """Starts a supervisor for ``run_dir`` (whose ``launch.json`` is written).

        Blocks for about a millisecond, or for the server's start on first use.

        Returns:
            The supervisor's pid and start time.

        Raises:
            ForkServerError: no supervisor was started and none will be.
        """
        with self._lock:
            if self._pid is None:
                if time.monotonic() < self._retry_at:
                    raise ForkServerError("the fork server failed recently")
                self._start()
            try:
                reply = self._request({"run_dir": str(run_dir)})
            except ForkServerError:
                # Once the server is dead, a reply it wrote before it died is final:
                # that child may have been told to go on, so it is the answer.
                left_behind = self._retire()
                if left_behind is None:
                    raise
                reply = left_behind
        if "error" in reply:
            raise ForkServerError(str(reply["error"]))
        pid, start_time = reply["pid"], reply["start_time"]
        return int(pid), None if start_time is None else int(start_time)

    def close(self) -> None:
        """Stops the server (it exits at end-of-file); running supervisors go on."""
        with self._lock:
            pid = self._pid
            self._close_pipes()
            if pid is not None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)

    def _start(self) -> None:
        try:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._retry_at = time.monotonic() + RETRY_AFTER_SECONDS
            raise ForkServerError(f"cannot start the fork server: {exc}") from exc
        requests_read, requests_write = os.pipe()
        replies_read, replies_write = os.pipe()
        try:
            self._pid = os.posix_spawn(
                self._python,
                [self._python, "-S", "-P", "-m", "node.runtimes.forkserver"],
                {
                    "PATH": os.environ.get("PATH", os.defpath),
                    "PYTHONPATH": str(self._package_root),
                    "LANG": "C.UTF-8",
                },
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (
                        os.POSIX_SPAWN_OPEN,
                        1,
                        str(self._log_path),
                        os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                        0o600,
                    ),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                    (os.POSIX_SPAWN_DUP2, requests_read, REQUESTS_FD),
                    (os.POSIX_SPAWN_DUP2, replies_write, REPLIES_FD),
                ],
                setsid=True,  # a Ctrl-C meant for the daemon's terminal does not reach it
            )
        except OSError as exc:
            for fd in (requests_read, requests_write, replies_read, replies_write):
                os.close(fd)
            self._retry_at = time.monotonic() + RETRY_AFTER_SECONDS
            raise ForkServerError(f"cannot start the fork server: {exc}") from exc
        os.close(requests_read)
        os.close(replies_write)
        self._requests, self._replies, self._pending = requests_write, replies_read, b""

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            os.write(self._requests, json.dumps(request).encode("utf-8") + b"\n")
        except OSError as exc:  # EPIPE: it exited before it read the request
            raise ForkServerError(f"the fork server exited: {self._last_log_line()}") from exc
        deadline = time.monotonic() + self._reply_timeout
        while (reply := self._next_reply()) is None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise ForkServerError(
                    f"the fork server did not answer within {self._reply_timeout:g} s"
                )
            data = os.read(self._replies, 65536)
            if not data:
                raise ForkServerError(f"the fork server exited: {self._last_log_line()}")
            self._pending += data
        return reply

    def _next_reply(self) -> dict[str, Any] | None:
        """The next whole reply line received, parsed; None until one is in."""
        if b"\n" not in self._pending:
            return None
        line, self._pending = self._pending.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)  # the server writes nothing else
        return reply

    def _retire(self) -> dict[str, Any] | None:
        """Kills the server after a failure and waits for it, so no child of it can
        be told to go on any more. Returns a reply it wrote before it died, if any."""
        pid = self._pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if self._replies >= 0:
            os.set_blocking(self._replies, False)
            # A child forked just now may still hold the write end: read, do not wait.
            with contextlib.suppress(BlockingIOError):
                while data := os.read(self._replies, 65536):
                    self._pending += data
        reply = self._next_reply()
        self._close_pipes()
        self._retry_at = time.monotonic() + RETRY_AFTER_SECONDS
        return reply

    def _close_pipes(self) -> None:
        for fd in (self._requests, self._replies):
            if fd >= 0:
                os.close(fd)
        self._requests = self._replies = -1
        self._pending = b""
        self._pid = None

    def _last_log_line(self) -> str:
        try:
            lines = self._log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no output"
        return lines[-1] if lines else "no output"


if __name__ == "__main__":
    sys.exit(main())
