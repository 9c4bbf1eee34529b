"""The docker runtime: each run is a container on the node's Docker engine.

Containers carry the labels ``murmur.node``, ``murmur.run_id`` and
``murmur.job_id``, and are named ``murmur-<run_id>``, so after a kill -9 of the
daemon :meth:`DockerRuntime.recover` finds them by label: it adopts the ones
still running, reads the exit code of the ones that ended meanwhile (containers
are never auto-removed, so the code survives), and force-removes any container
of this node that the store does not know (a run must never go on unseen).

A run's output is followed by a log pump: two threads (stdout, stderr) reading
the engine's timestamped log stream and writing into the run's one
:class:`~murmur.node.agent.runtimes.run_log.RunLogWriter`. The engine keeps the output while
the daemon is down; a pump started again resumes just after the last line on
disk, so nothing is lost and nothing written twice.

The Docker SDK is synchronous: short calls run in ``asyncio.to_thread``; calls
that block for a run's lifetime (waiting for its exit, stopping it with a long
grace) run in a thread of their own, so they never starve the default executor.
Containers run under ``docker-init`` (``init=True``): the job is not PID 1, so it
gets SIGTERM on stop like any process (PID 1 ignores it by default), and its
zombies are reaped.

A run that holds a lease from the leader (``lease.json`` in its directory, see
:mod:`murmur.node.agent.runtimes.lease_file`) gets a lease guard
(:mod:`murmur.node.agent.runtimes.lease_guard`) next to its container: a process in a
session of its own that outlives the daemon and stops the container once the lease
has passed, as the process runtime's supervisor does for a process. The guard writes
why it stopped it (``lease_stop.json``) before it does; :meth:`DockerRuntime.wait` and
:meth:`DockerRuntime.recover` then report the run lost, with that reason.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import dataclasses
import fcntl
import logging
import math
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import docker.types
import requests

from murmur.node.agent.runtimes.base import (
    LaunchSpec,
    RecoveredRun,
    RunExit,
    RunFiles,
    RunFilesOf,
    RunHandle,
    RuntimeStartError,
)
from murmur.node.agent.runtimes.detached import spawn_module
from murmur.node.agent.runtimes.lease_file import (
    LEASE_GUARD_LOCK,
    LEASE_GUARD_LOG,
    mark_container_removed,
    read_lease,
)
from murmur.node.agent.runtimes.process import dataset_variable
from murmur.node.agent.runtimes.run_log import RunLogWriter, Stream, end_offset, read_entries
from murmur.node.agent.runtimes.supervisor import read_json, write_json_atomic

_log = logging.getLogger("murmur.node.runtimes")

T = TypeVar("T")

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
LABEL_NODE = "murmur.node"
LABEL_RUN = "murmur.run_id"
LABEL_JOB = "murmur.job_id"
DATASETS_DIR = "/datasets"

API_TIMEOUT_SECONDS = 60
"""For every engine call but the ones that last as long as a run (wait, log streams)."""

MAX_POOL_CONNECTIONS = 256
"""Each run holds up to three engine connections (wait, stdout, stderr)."""

LOG_DRAIN_SECONDS = 10.0
"""After a container ends: how long its log pump may take to write the rest."""

RECONNECT_SECONDS = 2.0
"""Pause before asking an engine that stopped answering again."""

RESUME_WINDOW_BYTES = 8 * 1024 * 1024
"""How much of the end of a run's log is read to find where to resume."""

TIME_SLACK = 2e-6
"""Log times are kept to the microsecond, the engine's to the nanosecond: resuming
asks the engine for a little more than needed, and skips what is already written."""

CONTAINER_LOG_CONFIG = {"type": "json-file", "config": {"max-size": "64m", "max-file": "3"}}
"""The engine's own copy of the output, which the pump reads: capped like ours.
(Not the ``local`` driver: in Docker 20.10 it drops the newline that ends a line
longer than 16 KiB, so that line and the next would become one.)"""

ENGINE_ERRORS = (docker.errors.DockerException, requests.RequestException)
"""What a call to the engine raises when it refuses or cannot be reached."""

LEASE_STOP_FILE = "lease_stop.json"
"""In the run's directory: written by the lease guard just before it stops the container."""


def container_name(run_id: str) -> str:
    return f"murmur-{run_id}"


def container_command(spec: LaunchSpec) -> list[str]:
    """The container's command: ``argv``, or ``/bin/sh -c`` over it when the user asked for
    a shell (joined by spaces, as the process runtime does)."""
    if spec.shell:
        return ["/bin/sh", "-c", " ".join(spec.argv)]
    return list(spec.argv)


def container_environment(spec: LaunchSpec, *, real_gpus: bool) -> dict[str, str]:
    """The environment of a run's container.

    The user's variables, then Murmur's own, which the user cannot override:
    ``MURMUR_JOB_ID``, ``MURMUR_RUN_ID``, ``CUDA_VISIBLE_DEVICES``,
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and ``MURMUR_DATASET_<NAME>=/datasets/<name>``.
    ``PYTHONUNBUFFERED=1`` comes first (output reaches the log as it is printed;
    the user may turn it off).

    ``CUDA_VISIBLE_DEVICES``: with real GPUs the engine passes only the run's GPUs
    into the container, where CUDA numbers them from 0, so it is ``0,1,...``; with
    simulated GPUs nothing is passed and it is the node-local indices, exactly as
    the process runtime sets it. Empty without GPUs, so a CPU job cannot take one.
    """
    env = {"PYTHONUNBUFFERED": "1", **spec.env}
    env["MURMUR_JOB_ID"] = spec.job_id
    env["MURMUR_RUN_ID"] = spec.run_id
    visible = range(len(spec.gpu_indices)) if real_gpus else spec.gpu_indices
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(index) for index in visible)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    for dataset in spec.datasets:
        env[dataset_variable(dataset.name)] = f"{DATASETS_DIR}/{dataset.name}"
    return env


def check_unix_socket(host: str) -> None:
    """Fails fast, and cleanly, when a ``unix://`` engine socket does not accept.

    The SDK leaks the socket of a refused connection (its ``UnixHTTPConnection``
    does not close it), which piles up while an absent engine is polled.

    Raises:
        docker.errors.DockerException: nothing accepts connections at the socket.
    """
    if not host.startswith("unix://"):
        return
    path = host.removeprefix("unix://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5.0)
        try:
            probe.connect(path)
        except OSError as exc:
            raise docker.errors.DockerException(
                f"cannot connect to {path}: {exc.strerror or exc}"
            ) from exc


def engine_reason(exc: BaseException) -> str:
    """One line saying why the engine refused or could not be reached."""
    explanation = getattr(exc, "explanation", None)
    text = str(explanation) if explanation else str(exc) or type(exc).__name__
    return " ".join(text.split())


def parse_engine_time(stamp: str) -> float | None:
    """Unix seconds from the engine's RFC 3339 log time (``2026-01-02T03:04:05.123456789Z``)."""
    stamp = stamp.strip()
    if not stamp.endswith("Z"):
        return None
    main, _, fraction = stamp[:-1].partition(".")
    try:
        seconds = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
        return seconds + (float(f"0.{fraction}") if fraction else 0.0)
    except ValueError:
        return None


def exit_reason(exit_code: int, *, oom_killed: bool) -> str:
    if oom_killed:
        return f"exited with code {exit_code} (killed: out of memory)"
    return f"exited with code {exit_code}"


def record_exit(files: RunFiles, result: RunExit) -> None:
    """Writes ``exit.json`` atomically; a failure is logged (the store still has the exit)."""
    try:
        files.directory.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            files.exit,
            {"exit_code": result.exit_code, "reason": result.reason, "finished_at": time.time()},
        )
    except OSError as exc:
        _log.error("cannot record the exit of a run", extra={"path": str(files.exit), "error": exc})


@dataclass(frozen=True)
class LeaseStop:
    """``lease_stop.json``: the lease guard stopped (or is stopping) a container."""

    container_id: str
    """The full id of the container it stopped: a record about another is ignored."""
    reason: str
    """Starts with ``lost:`` and names the lease."""
    at: float
    """Unix seconds, just before the guard asked the engine to stop the container."""


def write_lease_stop(run_dir: Path, stop: LeaseStop) -> None:
    write_json_atomic(
        run_dir / LEASE_STOP_FILE,
        {"container_id": stop.container_id, "reason": stop.reason, "at": stop.at},
    )


def read_lease_stop(run_dir: Path) -> LeaseStop | None:
    """The lease guard's record, or None when there is none or it is damaged."""
    data = read_json(run_dir / LEASE_STOP_FILE)
    if data is None:
        return None
    try:
        return LeaseStop(
            container_id=str(data["container_id"]), reason=str(data["reason"]), at=float(data["at"])
        )
    except (KeyError, TypeError, ValueError):
        return None


def lease_stop_reason(run_dir: Path, container_id: str, finished_at: str | None) -> str | None:
    """Why the lease guard stopped this container, if it did.

    Args:
        run_dir: the run's directory.
        container_id: the container's full id.
        finished_at: the engine's ``State.FinishedAt``, None when the container is gone.
            A container that ended before the guard decided to stop it ended by
            itself (the guard's stop then found it stopped).
    """
    stop = read_lease_stop(run_dir)
    if stop is None or stop.container_id != container_id:
        return None
    if finished_at is not None:
        finished = parse_engine_time(finished_at)
        if finished is not None and finished < stop.at:
            return None
    return stop.reason


def lease_guard_running(run_dir: Path) -> bool:
    """Whether a lease guard holds the run's guard lock (probes it without waiting)."""
    try:
        fd = os.open(run_dir / LEASE_GUARD_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases the lock if the probe took it
    return False


def spawn_lease_guard(
    *, python: str, run_dir: Path, run_id: str, container_id: str, host: str
) -> int:
    """Starts the lease guard of a container in a session of its own (``setsid``), so
    that neither a kill of the daemon nor of its process group reaches it.
    ``posix_spawn``, not fork: the daemon runs gRPC, which must not be forked.

    Returns:
        The guard's pid; the caller reaps it.

    Raises:
        OSError: it could not be started.
    """
    return spawn_module(
        python,
        ["-P"],
        "murmur.node.agent.runtimes.lease_guard",
        [str(run_dir.resolve()), run_id, container_id, host],
        log_path=run_dir / LEASE_GUARD_LOG,
    )


@dataclass
class ResumePoint:
    """Where one stream's output stands in the run's log, to go on from there without
    writing a line twice.

    The engine is asked for the lines since just before ``last`` (the time of the
    newest line in the log); while catching up, lines older than ``last``, and
    lines at ``last`` that are already in the log (counted, so a line printed twice
    in one microsecond is written twice), are skipped. The first line not in the
    log ends the catching up: from then on every line is written, even if the
    clock steps back.
    """

    last: float = 0.0
    already: Counter[str] = field(default_factory=Counter)
    catching_up: bool = True

    @property
    def since(self) -> float:
        """The ``since`` to ask the engine for (0: from the start)."""
        return max(0.0, self.last - TIME_SLACK) if self.last else 0.0

    def is_written(self, moment: float, text: str) -> bool:
        """Whether this line is already in the log (consumes the match)."""
        if not self.catching_up:
            return False
        if moment < self.last:
            return True
        if moment == self.last and self.already[text] > 0:
            self.already[text] -= 1
            return True
        self.catching_up = False
        return False

    def note(self, moment: float, text: str) -> None:
        """Remembers a line just written."""
        if moment != self.last:
            self.already = Counter()
            self.last = moment
        self.already[text] += 1

    def reconnect(self) -> None:
        """A new stream from the engine starts at ``since``: catch up again."""
        self.catching_up = True


def resume_points(log_dir: Path) -> dict[Stream, ResumePoint]:
    """Where stdout and stderr stand in a run's log, from the end of the log.

    Only the last :data:`RESUME_WINDOW_BYTES` are read. A stream with no line
    there resumes from the window's first line (its last line is older).
    """
    start = max(0, end_offset(log_dir) - RESUME_WINDOW_BYTES)
    points: dict[Stream, ResumePoint] = {}
    first: float | None = None
    for entry in read_entries(log_dir, from_offset=start):
        moment = entry.time
        if first is None:
            first = moment
        if entry.stream in ("stdout", "stderr"):
            points.setdefault(entry.stream, ResumePoint()).note(moment, entry.text)
    for stream in ("stdout", "stderr"):
        if stream not in points:
            points[stream] = ResumePoint(last=first if start > 0 and first is not None else 0.0)
    return points


class LogPump:
    """Follows a container's stdout and stderr into the run's log.

    Two threads, one writer: writes are serialised by a lock. A stream that ends
    while the container still runs (the engine restarted, a connection dropped) is
    opened again from where it stands. ``follow=False`` copies what the engine has
    and stops (a container that already ended).
    """

    def __init__(
        self,
        *,
        client: Callable[[], Any],
        run_id: str,
        container_id: str,
        log_dir: Path,
        resume: dict[Stream, ResumePoint],
        follow: bool = True,
    ) -> None:
        self._client = client
        self._run_id = run_id
        self._container_id = container_id
        self._follow = follow
        self._writer = RunLogWriter(log_dir)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._open_streams: set[Any] = set()
        self._threads = [
            threading.Thread(
                target=self._pump,
                args=(stream, resume[stream]),
                name=f"murmur-log-{stream}-{run_id}",
                daemon=True,
            )
            for stream in ("stdout", "stderr")
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> bool:
        """Waits for both streams to end; whether they did within ``timeout``."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def close(self) -> None:
        """Stops following and closes the writer (idempotent)."""
        self._closed.set()
        with self._lock:
            streams = list(self._open_streams)
        for stream in streams:
            with contextlib.suppress(Exception):  # closing a socket the engine already closed
                stream.close()
        self.join(1.0)
        with self._lock:
            self._writer.close()

    def _write(self, stream: Stream, moment: float, text: str, point: ResumePoint) -> None:
        moment = round(moment, 6)
        if point.is_written(moment, text):
            return
        with self._lock:
            if self._closed.is_set():
                return
            self._writer.write(stream, text, at=moment)
        point.note(moment, text)

    def _pump(self, stream: Stream, point: ResumePoint) -> None:
        follow = self._follow
        while not self._closed.is_set():
            try:
                self._copy(stream, point, follow=follow)
            except docker.errors.NotFound:
                return
            except ENGINE_ERRORS as exc:
                _log.warning(
                    "lost the output stream of a container; trying again",
                    extra={"run_id": self._run_id, "stream": stream, "error": engine_reason(exc)},
                )
            if not follow or self._closed.is_set():
                return
            if not self._still_running():
                # A followed stream may end before the engine hands over the last
                # output (often a line without a newline): one more plain read.
                follow = False
                continue
            self._closed.wait(RECONNECT_SECONDS)

    def _copy(self, stream: Stream, point: ResumePoint, *, follow: bool) -> None:
        point.reconnect()
        logs = self._client().api.logs(
            self._container_id,
            stdout=stream == "stdout",
            stderr=stream == "stderr",
            stream=True,
            follow=follow,
            timestamps=True,
            since=point.since if point.since > 0 else None,
        )
        with self._lock:
            self._open_streams.add(logs)
        partial: tuple[float, str] | None = None
        try:
            for frame in logs:
                stamp, _, raw = bytes(frame).partition(b" ")
                moment = parse_engine_time(stamp.decode("ascii", "replace")) or time.time()
                text = raw.decode("utf-8", errors="replace")
                if partial is not None:  # the engine cuts lines over 16 KiB into parts
                    moment, text = partial[0], partial[1] + text
                    partial = None
                if not text.endswith("\n"):
                    partial = (moment, text)
                    continue
                for line in text[:-1].split("\n"):
                    self._write(stream, moment, line, point)
        finally:
            if partial is not None:  # the last output had no newline
                self._write(stream, partial[0], partial[1], point)
            with self._lock:
                self._open_streams.discard(logs)
            logs.close()

    def _still_running(self) -> bool:
        try:
            state = self._client().api.inspect_container(self._container_id)["State"]
        except docker.errors.NotFound:
            return False
        except ENGINE_ERRORS:
            return True  # the engine is away; the container may well run on
        return bool(state.get("Running"))


async def _in_own_thread(call: Callable[[], T], *, name: str) -> T:
    """Runs a call that may block for a long time in a new thread, not the shared executor."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def target() -> None:
        try:
            result = call()
        except BaseException as exc:
            error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(error))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: future.set_result(result))

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future


class DockerRuntime:
    """Runs jobs as containers on the node's Docker engine (see the module docstring)."""

    name = "docker"

    def __init__(
        self,
        *,
        node_name: str,
        runs_dir: Path,
        docker_host: str | None = None,
        network_mode: str = "bridge",
        real_gpus: bool = False,
    ) -> None:
        """Args:
        node_name: labels this node's containers; recovery reaps unknown ones with it.
        runs_dir: ``<data_dir>/runs``, where a run's files are when no other place is known.
        docker_host: the engine's address; None: ``DOCKER_HOST``, else the default socket.
        network_mode: the node's network mode for containers, used when a run's
            ``LaunchSpec.network_mode`` is the default ``"bridge"``.
        real_gpus: the node's GPUs are real: pass a run's GPUs into its container
            (NVIDIA device requests). False with simulated GPUs: nothing is passed.
        """
        self._node = node_name
        self._runs_dir = runs_dir
        self._host = docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
        self._network_mode = network_mode
        self._real_gpus = real_gpus
        self._python = sys.executable
        """Runs the lease guards (needs the ``node`` package and the Docker SDK)."""
        self._docker: Any = None
        self._closed = False
        self._client_lock = threading.Lock()
        self._pumps: dict[str, LogPump] = {}
        self._files: dict[str, RunFiles] = {}
        self._guards: set[int] = set()
        """Lease guards this process started and has not reaped yet."""
        self._state_lock = threading.Lock()

    @property
    def host(self) -> str:
        return self._host

    # -- the Runtime interface ------------------------------------------------------------

    async def available(self) -> tuple[bool, str]:
        return await asyncio.to_thread(self._available)

    async def start(self, spec: LaunchSpec) -> RunHandle:
        if not spec.image:
            raise RuntimeStartError("the docker runtime needs an image: give one with --image")
        container_id = await asyncio.to_thread(self._start, spec)
        return RunHandle(run_id=spec.run_id, runtime=self.name, container_id=container_id)

    async def wait(self, handle: RunHandle) -> RunExit:
        files = self._files_of(handle.run_id)
        while True:
            try:
                await asyncio.to_thread(self._ensure_pump, handle, files)
                status = await _in_own_thread(
                    lambda: self._client().api.wait(handle.container_id),
                    name=f"murmur-wait-{handle.run_id}",
                )
                break
            except docker.errors.NotFound:
                result = RunExit(None, "lost: container removed outside murmur")
                await asyncio.to_thread(self._conclude, handle.run_id, files, result)
                return result
            except ENGINE_ERRORS as exc:
                _log.warning(
                    "cannot wait for a container; asking the engine again",
                    extra={"run_id": handle.run_id, "error": engine_reason(exc)},
                )
                await asyncio.sleep(RECONNECT_SECONDS)
        result = await asyncio.to_thread(self._ended, handle, int(status["StatusCode"]))
        await asyncio.to_thread(self._conclude, handle.run_id, files, result)
        return result

    async def stop(self, handle: RunHandle, *, grace_seconds: float) -> None:
        await _in_own_thread(
            lambda: self._stop(handle, grace_seconds), name=f"murmur-stop-{handle.run_id}"
        )

    async def recover(self, known: list[RunHandle], files_of: RunFilesOf) -> list[RecoveredRun]:
        return await asyncio.to_thread(self._recover, known, files_of)

    async def cleanup(self, handle: RunHandle) -> None:
        await asyncio.to_thread(self._cleanup, handle)

    def close(self) -> None:
        """Stops the log pumps and closes the engine connection (the containers run on).
        Called by the daemon on shutdown; blocks briefly, so call it from a thread."""
        with self._client_lock:
            self._closed = True
        with self._state_lock:
            pumps = list(self._pumps.values())
            self._pumps.clear()
        for pump in pumps:
            pump.close()
        self._reap_guards()  # the ones still running go on: they outlive the daemon
        with self._client_lock:
            if self._docker is not None:
                self._docker.close()
                self._docker = None

    # -- blocking parts, run in worker threads --------------------------------------------

    def _client(self) -> Any:
        """The SDK client, made on first use (making it asks the engine for its version)."""
        with self._client_lock:
            if self._closed:
                raise docker.errors.DockerException("the docker runtime is closed")
            if self._docker is None:
                check_unix_socket(self._host)
                self._docker = docker.DockerClient(
                    base_url=self._host,
                    version="auto",
                    timeout=API_TIMEOUT_SECONDS,
                    max_pool_size=MAX_POOL_CONNECTIONS,
                )
            return self._docker

    def _available(self) -> tuple[bool, str]:
        try:
            client = self._client()
            client.ping()
            version = client.version().get("Version", "?")
        except ENGINE_ERRORS as exc:
            return False, f"docker: no engine answering at {self._host}: {engine_reason(exc)}"
        return True, f"docker: engine {version} at {self._host}"

    def _start(self, spec: LaunchSpec) -> str:
        image = spec.image
        try:
            spec.files.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RuntimeStartError(
                f"cannot create the run's log directory {spec.files.log_dir}: {exc.strerror or exc}"
            ) from exc
        try:
            client = self._client()
        except ENGINE_ERRORS as exc:
            raise RuntimeStartError(
                f"docker: no engine answering at {self._host}: {engine_reason(exc)}"
            ) from exc
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            raise RuntimeStartError(
                f"image {image} is not present on node {self._node}; there is no registry "
                "here: load it with `docker load`"
            ) from None
        except ENGINE_ERRORS as exc:
            raise RuntimeStartError(
                f"docker: cannot look up image {image}: {engine_reason(exc)}"
            ) from exc
        try:
            container = client.containers.create(image, **self._container_options(spec))
        except ENGINE_ERRORS as exc:
            raise RuntimeStartError(
                f"docker: cannot create the container for run {spec.run_id}: {engine_reason(exc)}"
            ) from exc
        try:
            container.start()
        except ENGINE_ERRORS as exc:
            with contextlib.suppress(*ENGINE_ERRORS):
                container.remove(force=True)
            raise RuntimeStartError(
                f"docker: cannot start the container for run {spec.run_id}: {engine_reason(exc)}"
            ) from exc
        container_id = str(container.id)
        with self._state_lock:
            self._files[spec.run_id] = spec.files
        try:
            self._start_pump(spec.run_id, container_id, spec.files, follow=True)
        except OSError as exc:
            with contextlib.suppress(*ENGINE_ERRORS):
                container.remove(force=True)
            raise RuntimeStartError(
                f"cannot write the run's log in {spec.files.log_dir}: {exc.strerror or exc}"
            ) from exc
        self._ensure_guard(spec.run_id, container_id, spec.files)
        return container_id

    def _container_options(self, spec: LaunchSpec) -> dict[str, Any]:
        labels = {
            **spec.labels,
            LABEL_NODE: self._node,
            LABEL_RUN: spec.run_id,
            LABEL_JOB: spec.job_id,
        }
        mounts = [
            docker.types.Mount(
                target=f"{DATASETS_DIR}/{dataset.name}",
                source=str(dataset.host_path),
                type="bind",
                read_only=True,
            )
            for dataset in spec.datasets
        ]
        options: dict[str, Any] = {
            "name": container_name(spec.run_id),
            "command": container_command(spec),
            "environment": container_environment(spec, real_gpus=self._real_gpus),
            "labels": labels,
            "working_dir": spec.workdir,
            "network_mode": (
                self._network_mode if spec.network_mode == "bridge" else spec.network_mode
            ),
            "mounts": mounts,
            "init": True,
            "log_config": CONTAINER_LOG_CONFIG,
        }
        if spec.cpus is not None:
            options["nano_cpus"] = round(spec.cpus * 1e9)
        if spec.memory_bytes is not None:
            options["mem_limit"] = spec.memory_bytes
        if self._real_gpus and spec.gpu_indices:
            options["device_requests"] = [
                docker.types.DeviceRequest(
                    driver="nvidia",
                    device_ids=[str(index) for index in spec.gpu_indices],
                    capabilities=[["gpu"]],
                )
            ]
        return options

    def _start_pump(
        self, run_id: str, container_id: str, files: RunFiles, *, follow: bool
    ) -> LogPump:
        """Starts following a run's output from where its log ends (replacing any pump)."""
        with self._state_lock:
            previous = self._pumps.pop(run_id, None)
        if previous is not None:
            previous.close()
        pump = LogPump(
            client=self._client,
            run_id=run_id,
            container_id=container_id,
            log_dir=files.log_dir,
            resume=resume_points(files.log_dir),
            follow=follow,
        )
        with self._state_lock:
            self._pumps[run_id] = pump
        pump.start()
        return pump

    def _ensure_pump(self, handle: RunHandle, files: RunFiles) -> None:
        """A run waited for without being started or recovered here gets its pump now."""
        with self._state_lock:
            if handle.run_id in self._pumps:
                return
        self._client().api.inspect_container(handle.container_id)  # NotFound: it is gone
        self._start_pump_logged(handle.run_id, handle.container_id, files, follow=True)

    def _start_pump_logged(
        self, run_id: str, container_id: str, files: RunFiles, *, follow: bool
    ) -> None:
        """Starts a pump for a run already going; a log that cannot be written is only logged."""
        try:
            self._start_pump(run_id, container_id, files, follow=follow)
        except OSError as exc:
            _log.error(
                "cannot write the output of a run",
                extra={"run_id": run_id, "path": str(files.log_dir), "error": exc},
            )

    def _ended(self, handle: RunHandle, exit_code: int) -> RunExit:
        """How a container that just stopped ended (it may have been removed meanwhile)."""
        run_dir = self._files_of(handle.run_id).directory
        try:
            state = self._client().api.inspect_container(handle.container_id)["State"]
        except docker.errors.NotFound:
            reason = lease_stop_reason(run_dir, handle.container_id, None)
            return RunExit(None, reason or "lost: container removed outside murmur")
        except ENGINE_ERRORS:
            reason = lease_stop_reason(run_dir, handle.container_id, None)
            return RunExit(exit_code, reason or exit_reason(exit_code, oom_killed=False))
        if reason := lease_stop_reason(run_dir, handle.container_id, state.get("FinishedAt")):
            return RunExit(exit_code, reason)
        if state.get("Status") in ("removing", "dead"):  # a forced removal killed it
            return RunExit(None, "lost: container removed outside murmur")
        return RunExit(exit_code, exit_reason(exit_code, oom_killed=bool(state.get("OOMKilled"))))

    def _conclude(self, run_id: str, files: RunFiles, result: RunExit) -> None:
        """Lets the log pump write the rest of the output, then records the exit."""
        with self._state_lock:
            pump = self._pumps.pop(run_id, None)
        if pump is not None:
            if not pump.join(LOG_DRAIN_SECONDS):
                _log.warning("the output of a run was not all copied", extra={"run_id": run_id})
            pump.close()
        record_exit(files, result)

    def _stop(self, handle: RunHandle, grace_seconds: float) -> None:
        try:
            self._client().api.stop(handle.container_id, timeout=math.ceil(max(0.0, grace_seconds)))
        except docker.errors.NotFound:
            return
        except ENGINE_ERRORS as exc:
            _log.error(
                "cannot stop a container",
                extra={"run_id": handle.run_id, "error": engine_reason(exc)},
            )

    def _cleanup(self, handle: RunHandle) -> None:
        """Removes the container; one its lease guard stopped, or that is gone, is no error."""
        with self._state_lock:
            pump = self._pumps.pop(handle.run_id, None)
            files = self._files.pop(handle.run_id, None)
        if pump is not None:
            pump.close()
        if self._remove(handle.container_id, run_id=handle.run_id) and files is not None:
            with contextlib.suppress(OSError):  # the guard then exits once the lease passed
                mark_container_removed(files.directory)
        self._reap_guards()

    def _ensure_guard(self, run_id: str, container_id: str, files: RunFiles) -> None:
        """Starts the lease guard of a running container whose run has a lease, unless
        one already runs (a restarted daemon adopting the container). A guard that
        cannot be started is logged: the daemon's own lease watch still stops the run
        while the daemon lives."""
        self._reap_guards()
        if read_lease(files.directory) is None or lease_guard_running(files.directory):
            return
        try:
            pid = spawn_lease_guard(
                python=self._python,
                run_dir=files.directory,
                run_id=run_id,
                container_id=container_id,
                host=self._host,
            )
        except OSError as exc:
            _log.error(
                "cannot start the lease guard of a container; it will not be stopped "
                "on an expired lease while the daemon is down",
                extra={"run_id": run_id, "error": exc},
            )
            return
        with self._state_lock:
            self._guards.add(pid)

    def _reap_guards(self) -> None:
        """Collects the lease guards that exited (only those: other children are not ours)."""
        with self._state_lock:
            guards = list(self._guards)
        for pid in guards:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                with self._state_lock:
                    self._guards.discard(pid)

    def _remove(self, container_id: str, *, run_id: str) -> bool:
        """Removes the container; returns whether it is gone."""
        try:
            self._client().api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            return True
        except ENGINE_ERRORS as exc:
            _log.error(
                "cannot remove a container", extra={"run_id": run_id, "error": engine_reason(exc)}
            )
            return False
        return True

    def _recover(self, known: list[RunHandle], files_of: RunFilesOf) -> list[RecoveredRun]:
        try:
            containers = self._client().api.containers(
                all=True, filters={"label": f"{LABEL_NODE}={self._node}"}
            )
        except ENGINE_ERRORS as exc:
            # Without the engine nothing can be told; the runs stay unresolved rather
            # than lost, and the manager's wait() keeps asking the engine.
            _log.error(
                "cannot list this node's containers to recover runs",
                extra={"host": self._host, "error": engine_reason(exc)},
            )
            return [RecoveredRun(handle, None) for handle in known if handle.runtime == self.name]
        ours = [handle for handle in known if handle.runtime == self.name]
        known_ids = {handle.run_id for handle in ours}
        by_run: dict[str, dict[str, Any]] = {}
        orphans: list[tuple[str, dict[str, Any]]] = []
        for summary in containers:
            run_id = str((summary.get("Labels") or {}).get(LABEL_RUN, ""))
            if run_id in known_ids and run_id not in by_run:
                by_run[run_id] = summary
            else:
                orphans.append((run_id, summary))
        for run_id, summary in orphans:
            _log.warning(
                "removing a container of this node that no known run owns",
                extra={"run_id": run_id, "container_id": summary.get("Id", "")},
            )
            self._remove(str(summary["Id"]), run_id=run_id)
        recovered = []
        for handle in ours:
            files = files_of(handle.run_id)
            with self._state_lock:
                self._files[handle.run_id] = files
            recovered.append(self._recover_one(handle, files, by_run.get(handle.run_id)))
        return recovered

    def _recover_one(
        self, handle: RunHandle, files: RunFiles, summary: dict[str, Any] | None
    ) -> RecoveredRun:
        if summary is None:
            result = self._gone(handle, files)
            record_exit(files, result)
            return RecoveredRun(handle, result)
        container_id = str(summary["Id"])
        if container_id != handle.container_id:
            handle = dataclasses.replace(handle, container_id=container_id)
        if summary.get("State") in ("running", "paused", "restarting"):
            self._start_pump_logged(handle.run_id, container_id, files, follow=True)
            self._ensure_guard(handle.run_id, container_id, files)
            return RecoveredRun(handle, None)
        try:
            state = self._client().api.inspect_container(container_id)["State"]
        except docker.errors.NotFound:
            result = self._gone(handle, files)
            record_exit(files, result)
            return RecoveredRun(handle, result)
        except ENGINE_ERRORS as exc:
            _log.error(
                "cannot inspect a container to recover its run",
                extra={"run_id": handle.run_id, "error": engine_reason(exc)},
            )
            return RecoveredRun(handle, None)
        lease_reason = lease_stop_reason(files.directory, container_id, state.get("FinishedAt"))
        if summary.get("State") == "created":
            result = RunExit(None, "lost: the container was created but never started")
        elif lease_reason is not None:
            result = RunExit(int(state.get("ExitCode", -1)), lease_reason)
        else:
            exit_code = int(state.get("ExitCode", -1))
            result = RunExit(
                exit_code, exit_reason(exit_code, oom_killed=bool(state.get("OOMKilled")))
            )
        self._start_pump_logged(handle.run_id, container_id, files, follow=False)
        self._conclude(handle.run_id, files, result)
        return RecoveredRun(handle, result)

    @staticmethod
    def _gone(handle: RunHandle, files: RunFiles) -> RunExit:
        """How a run whose container is gone ended: lost, on its lease if the guard stopped it."""
        reason = lease_stop_reason(files.directory, handle.container_id, None)
        return RunExit(None, reason or "lost: container is gone")

    def _files_of(self, run_id: str) -> RunFiles:
        with self._state_lock:
            files = self._files.get(run_id)
        return files if files is not None else RunFiles(self._runs_dir / run_id)
