"""The supervisor fork server: one long-lived process that forks a ready supervisor per run.

Starting a supervisor as a fresh interpreter (``python -m murmur.node.agent.runtimes.supervisor``)
costs 50-65 ms of CPU per run (42 ms of wall time on an idle machine): interpreter
start, ``site`` and the supervisor's imports. On a busy node that was most of the
gap between one run ending and the next one starting. The fork server pays that
once: it is started by the process runtime as ``python -S -P -m
murmur.node.agent.runtimes.forkserver``, imports the supervisor, and then, per run, forks a
child that *is* a fresh supervisor (about 1 ms).

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
- The server exits as soon as its channel reaches end-of-file: when the
  daemon closes it, exits, or is killed.

Protocol, over a ``SOCK_SEQPACKET`` socket pair (fd ``CHANNEL_FD`` in the server),
one JSON object per message, one request at a time: the runtime sends
``{"run_dir": PATH}`` with the write end of the run's *started* pipe attached
(``SCM_RIGHTS``), the server answers ``{"pid": N, "start_time": T}`` or
``{"error": TEXT}``. The supervisor writes a byte to the started pipe once the
job runs (or exits, closing it): the runtime waits for that instead of polling
for ``child.json``.

Standard library only, plus :mod:`murmur.node.agent.runtimes.supervisor` and the small
modules it imports (which the server imports once, so that the children need to import
nothing).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from murmur._frozen import helper_command
from murmur.node.agent.runtimes import supervisor
from murmur.node.agent.runtimes.procfs import process_start_time
from murmur.node.agent.runtimes.run_files import SUPERVISOR_LOG

CHANNEL_FD = 3
"""The server's end of the socket pair: requests in, replies out."""

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


def _reply(channel: socket.socket, data: dict[str, Any]) -> None:
    channel.send(json.dumps(data).encode("utf-8"))


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


def _become_supervisor(
    run_dir: str, go_fd: int, started_fd: int, server_fds: tuple[int, ...]
) -> None:
    """The forked child: waits for the go, then runs the supervisor. Never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in server_fds:  # above all the channel: the runtime waits for its EOF
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
            os.path.join(run_dir, SUPERVISOR_LOG),
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o600,
        )
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        code = supervisor.main([run_dir, str(started_fd)])
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


def _fork_supervisor(
    channel: socket.socket, run_dir: str, started_fd: int, wake_fds: tuple[int, int]
) -> None:
    """Answers one request: forks the supervisor, replies, then lets it go on."""
    sys.stdout.flush()
    sys.stderr.flush()
    go_read, go_write = os.pipe()
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(go_read)
        os.close(go_write)
        _reply(channel, {"error": f"cannot fork a supervisor: {exc.strerror or exc}"})
        return
    if pid == 0:
        _become_supervisor(run_dir, go_read, started_fd, (CHANNEL_FD, go_write, *wake_fds))
    os.close(go_read)
    try:
        # Our unreaped child (reaping happens only in the main loop): this is its
        # start time, not a reused pid's.
        _reply(channel, {"pid": pid, "start_time": process_start_time(pid)})
        os.write(go_write, b"g")
    finally:
        os.close(go_write)  # without the go byte: end-of-file, and the child exits


def serve() -> None:
    """The server's loop: one request at a time until the channel closes."""
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)

    def on_child_exit(signum: int, frame: FrameType | None) -> None:
        """Only wakes the loop (through the wakeup fd); the loop reaps, so that a
        child is never reaped between its fork and the reading of its start time."""

    signal.signal(signal.SIGCHLD, on_child_exit)
    channel = socket.socket(fileno=CHANNEL_FD)
    while True:
        readable, _, _ = select.select([CHANNEL_FD, wake_read], [], [])
        if wake_read in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_read, 4096):
                    pass
            _reap_children()
        if CHANNEL_FD not in readable:
            continue
        message, fds, _, _ = socket.recv_fds(channel, 65536, 1)
        if not message and not fds:
            return  # the runtime closed its end, exited or was killed
        try:
            run_dir = str(json.loads(message)["run_dir"])
            (started_fd,) = fds
        except (ValueError, KeyError, TypeError) as exc:
            for fd in fds:
                os.close(fd)
            _reply(channel, {"error": f"bad request: {exc!r}"})
            continue
        try:
            _fork_supervisor(channel, run_dir, started_fd, (wake_read, wake_write))
        finally:
            os.close(started_fd)  # the child has its own copy


def main(argv: list[str] | None = None) -> int:
    """Takes no arguments (``argv`` is accepted so that every helper has one shape:
    the frozen build calls ``main(args)``, :mod:`murmur._frozen`)."""
    os.chdir("/")  # hold no directory busy
    _name_process("murmur-forksrv")
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # nobody to answer
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
            package_root: the directory holding the ``murmur`` package.
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
        self._channel: socket.socket | None = None
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

    def spawn(self, run_dir: Path, started_fd: int) -> tuple[int, int | None]:
        """Starts a supervisor for ``run_dir`` (whose ``launch.json`` is written).

        Blocks for about a millisecond, or for the server's start on first use.

        Args:
            run_dir: the run's directory.
            started_fd: the write end of the run's started pipe; the supervisor
                gets a copy (the caller keeps and closes its own).

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
                reply = self._request({"run_dir": str(run_dir)}, started_fd)
            except ForkServerError:
                # Once the server is dead, a reply it sent before it died is final:
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
            self._close_channel()
            if pid is not None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)

    def _start(self) -> None:
        try:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._retry_at = time.monotonic() + RETRY_AFTER_SECONDS
            raise ForkServerError(f"cannot start the fork server: {exc}") from exc
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            command = helper_command(
                "murmur.node.agent.runtimes.forkserver", [], python=self._python, flags=["-S", "-P"]
            )
            self._pid = os.posix_spawn(
                command[0],
                command,
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
                    (os.POSIX_SPAWN_DUP2, theirs.fileno(), CHANNEL_FD),
                ],
                setsid=True,  # a Ctrl-C meant for the daemon's terminal does not reach it
            )
        except OSError as exc:
            ours.close()
            self._retry_at = time.monotonic() + RETRY_AFTER_SECONDS
            raise ForkServerError(f"cannot start the fork server: {exc}") from exc
        finally:
            theirs.close()
        self._channel = ours

    def _request(self, request: dict[str, Any], started_fd: int) -> dict[str, Any]:
        assert self._channel is not None
        try:
            socket.send_fds(self._channel, [json.dumps(request).encode("utf-8")], [started_fd])
        except OSError as exc:  # EPIPE: it exited before it read the request
            raise ForkServerError(f"the fork server exited: {self._last_log_line()}") from exc
        ready = select.select([self._channel], [], [], self._reply_timeout)[0]
        if not ready:
            raise ForkServerError(
                f"the fork server did not answer within {self._reply_timeout:g} s"
            )
        try:
            reply = self._channel.recv(65536)
        except OSError as exc:
            raise ForkServerError(f"the fork server exited: {self._last_log_line()}") from exc
        if not reply:
            raise ForkServerError(f"the fork server exited: {self._last_log_line()}")
        parsed: dict[str, Any] = json.loads(reply)  # the server sends nothing else
        return parsed

    def _retire(self) -> dict[str, Any] | None:
        """Kills the server after a failure and waits for it, so no child of it can
        be told to go on any more. Returns a reply it sent before it died, if any."""
        pid = self._pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        reply = None
        if self._channel is not None:
            # A child forked just now may still hold the server's end: do not wait.
            self._channel.setblocking(False)
            with contextlib.suppress(OSError):
                if message := self._channel.recv(65536):
                    reply = json.loads(message)
        self._close_channel()
        self._retry_at = time.monotonic() + RETRY_AFTER_SECONDS
        return reply

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._pid = None

    def _last_log_line(self) -> str:
        try:
            lines = self._log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no output"
        return lines[-1] if lines else "no output"


if __name__ == "__main__":
    sys.exit(main())
