"""The lease guard: a small process per container that stops it once the run's lease has passed.

The docker runtime starts it
(:func:`murmur.node.agent.runtimes.docker_lease.spawn_lease_guard`) right after it
starts a container whose run holds a lease from the leader (``lease.json``, written
by the job manager before the run starts and on every renewal, see
:mod:`murmur.node.agent.runtimes.lease_file`), and again when a restarted daemon adopts a running
container that has none. It runs in a session of its own, so a kill of the daemon,
or of the daemon's whole process group, does not reach it: it is the docker
counterpart of the process runtime's supervisor, which enforces the same lease.

About once a second it reads the run's directory:

- the runtime removed the container (``container_removed``): the guard exits;
- the lease holds: nothing to do until the next round (the engine is not asked);
- the lease has passed (or there is none to read): it asks the engine about the
  container. Ended or gone: the guard exits. Still live: it writes
  ``lease_stop.json`` (the reason, which the runtime's ``wait`` and ``recover``
  report), then asks the engine to stop the container (SIGTERM, SIGKILL after the
  lease's grace), and kills it if it still runs. The engine does not answer: it
  logs, and asks again.

The engine client (the docker SDK) is imported only when the guard first has to ask
the engine (:mod:`murmur.node.agent.runtimes.docker_engine` loads it on first use): it
costs a fresh interpreter about 0.15 s of CPU, which every container start paid while
it was imported up front, and a container that ends with its lease valid never needs
it. A guard whose container ended while the daemon was down (so nobody marked it
removed) exits once the lease has passed.

It touches only the container whose full id it was given, and only while that
container carries the run's label. One guard per container: a guard holds an
exclusive lock on ``lease_guard.lock`` in the run's directory while it runs; a second
one exits at once, and the runtime starts none while the lock is held.

Usage: ``python -P -m murmur.node.agent.runtimes.lease_guard RUN_DIR RUN_ID CONTAINER_ID
DOCKER_HOST``; its output goes to ``lease_guard.log`` in RUN_DIR.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from murmur.node.agent.runtimes.docker_engine import (
    engine_errors,
    engine_reason,
    not_found_error,
    open_client,
)
from murmur.node.agent.runtimes.docker_labels import LABEL_RUN
from murmur.node.agent.runtimes.docker_lease import LeaseStop, write_lease_stop
from murmur.node.agent.runtimes.lease_file import (
    LEASE_GUARD_LOCK,
    RunLeaseFile,
    container_removed,
    read_lease,
)

if TYPE_CHECKING:
    from docker import DockerClient

_log = logging.getLogger("murmur.node.lease_guard")

CHECK_SECONDS = 1.0
"""How often the guard asks about its container and reads ``lease.json``."""

UNREACHABLE_LOG_SECONDS = 60.0
"""While the engine does not answer, how often the guard says so again."""

LIVE_STATES = ("created", "running", "paused", "restarting")
"""Engine states of a container that may still run the job (or run it again)."""


def lease_reason(lease: RunLeaseFile) -> str:
    """The run's end, as the process runtime's supervisor words it for a process."""
    return (
        f"lost: no word from a leader for {lease.lease_seconds:g} s (lease expired); "
        "stopped by the run's lease guard"
    )


@contextlib.contextmanager
def guard_lock(run_dir: Path) -> Iterator[bool]:
    """Holds the run's guard lock; yields whether it was free (False: another guard runs).
    A lock file that cannot be opened yields True: a guard that cannot lock still guards."""
    try:
        fd = os.open(run_dir / LEASE_GUARD_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        _log.warning("cannot open the guard lock %s: %s", run_dir / LEASE_GUARD_LOCK, exc)
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


class LeaseGuard:
    """Watches one container and its run's lease (see the module docstring)."""

    def __init__(
        self,
        *,
        run_dir: Path,
        run_id: str,
        container_id: str,
        host: str,
        clock: Callable[[], float] = time.time,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        """
        Args:
            run_dir: the run's directory (``lease.json`` is read there).
            run_id: the run; the container must carry it as its ``murmur.run_id`` label.
            container_id: the container's full id; no other container is touched.
            host: the engine's address.
            clock: the wall clock the lease's expiry is compared with.
            check_seconds: the period of the checks.
        """
        self._run_dir = run_dir
        self._run_id = run_id
        self._container_id = container_id
        self._host = host
        self._clock = clock
        self._check_seconds = check_seconds
        self._docker: DockerClient | None = None
        self._unreachable_since: float | None = None
        self._unreachable_logged = 0.0
        self._stopping = False

    def run(self) -> int:
        """Guards until the container has ended or is gone. Returns the exit status."""
        with guard_lock(self._run_dir) as free:
            if not free:
                _log.info("another lease guard watches this run's container; exiting")
                return 0
            _log.info("guarding container %s of run %s", self._container_id[:12], self._run_id)
            try:
                while self.check():
                    time.sleep(self._check_seconds)
            finally:
                self._close_client()
        return 0

    def check(self) -> bool:
        """One round (see the module docstring). Returns whether to go on."""
        if container_removed(self._run_dir):
            _log.info("the runtime removed the container; exiting")
            return False
        lease = read_lease(self._run_dir)
        if lease is not None and self._clock() < lease.expires_at:
            return True
        live = self._container_live()
        if live is False:
            return False
        if live and lease is not None:
            self._stop(lease)
        return True  # live is None: the engine does not answer; ask again next round

    def _container_live(self) -> bool | None:
        """Whether the container may still run (False: ended, gone or not ours);
        None when the engine cannot be asked."""
        try:
            details = self._client().api.inspect_container(self._container_id)
        except not_found_error():
            _log.info("the container is gone; exiting")
            return False
        except engine_errors() as exc:
            self._engine_failed(exc)
            return None
        self._engine_answered()
        labels = (details.get("Config") or {}).get("Labels") or {}
        label = labels.get(LABEL_RUN)
        if details.get("Id") != self._container_id or label != self._run_id:
            _log.error(
                "container %s is not run %s's (id %s, label %s); leaving it alone",
                self._container_id[:12], self._run_id, details.get("Id"), label,
            )  # fmt: skip
            return False
        status = (details.get("State") or {}).get("Status")
        if status not in LIVE_STATES:
            _log.info("the container has ended (%s); exiting", status)
            return False
        return True

    def _stop(self, lease: RunLeaseFile) -> None:
        """Records why, then stops the container: the engine sends SIGTERM, then SIGKILL
        after the lease's grace; a container still running after that is killed."""
        if not self._stopping:
            reason = lease_reason(lease)
            _log.warning("%s: stopping container %s", reason, self._container_id[:12])
            stop = LeaseStop(container_id=self._container_id, reason=reason, at=self._clock())
            try:
                write_lease_stop(self._run_dir, stop)
            except OSError as exc:  # the run still must stop; its reason will be a plain exit
                _log.error("cannot record why the container is stopped: %s", exc)
            self._stopping = True
        try:
            api = self._client().api
            api.stop(self._container_id, timeout=math.ceil(max(0.0, lease.grace_seconds)))
            if api.inspect_container(self._container_id)["State"].get("Running"):
                api.kill(self._container_id)
        except not_found_error():
            return
        except engine_errors() as exc:
            _log.error("cannot stop the container yet: %s", engine_reason(exc))
            self._close_client()

    def _client(self) -> DockerClient:
        if self._docker is None:
            self._docker = open_client(self._host)  # the SDK's default pool: one container
        return self._docker

    def _close_client(self) -> None:
        if self._docker is not None:
            with contextlib.suppress(Exception):  # closing what the engine already dropped
                self._docker.close()
            self._docker = None

    def _engine_failed(self, exc: BaseException) -> None:
        """Logs an engine that does not answer: at once, then every UNREACHABLE_LOG_SECONDS."""
        self._close_client()  # an engine that comes back gets a fresh connection
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        elif now - self._unreachable_logged < UNREACHABLE_LOG_SECONDS:
            return
        self._unreachable_logged = now
        _log.warning(
            "no engine answering at %s for %.0f s (%s); asking again",
            self._host, now - self._unreachable_since, engine_reason(exc),
        )  # fmt: skip

    def _engine_answered(self) -> None:
        if self._unreachable_since is not None:
            _log.info("the engine at %s answers again", self._host)
            self._unreachable_since = None


def _name_process(name: str) -> None:
    """Sets the name ``top`` and ``ps -o comm`` show (15 bytes at most)."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write(name)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 4:
        print(
            "usage: python -m murmur.node.agent.runtimes.lease_guard"
            " RUN_DIR RUN_ID CONTAINER_ID DOCKER_HOST",
            file=sys.stderr,
        )
        return 2
    run_dir, run_id, container_id, host = args
    directory = Path(run_dir).resolve()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s lease-guard[{os.getpid()}] %(levelname)s %(message)s",
    )
    os.chdir("/")  # hold no directory busy
    _name_process("murmur-guard")
    guard = LeaseGuard(run_dir=directory, run_id=run_id, container_id=container_id, host=host)
    return guard.run()


if __name__ == "__main__":
    sys.exit(main())
