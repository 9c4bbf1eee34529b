"""The docker runtime: each run is a container on the node's Docker engine.

Containers carry the labels ``murmur.node``, ``murmur.run_id`` and
``murmur.job_id``, and are named ``murmur-<run_id>``
(:mod:`murmur.node.agent.runtimes.docker_labels`), so after a kill -9 of the
daemon :meth:`DockerRuntime.recover` finds them by label: it adopts the ones
still running, reads the exit code of the ones that ended meanwhile (containers
are never auto-removed, so the code survives), and force-removes any container
of this node that the store does not know (a run must never go on unseen).

The rooms around it: what a container is made of
(:mod:`murmur.node.agent.runtimes.docker_container`), reaching the engine
(:mod:`murmur.node.agent.runtimes.docker_engine`, which loads the Docker SDK on first
use, so importing this module does not), following a container's output into the
run's log (:mod:`murmur.node.agent.runtimes.docker_logs`), and the lease guard a
container gets when its run holds a lease (:mod:`murmur.node.agent.runtimes.docker_lease`).

The Docker SDK is synchronous: short calls run in ``asyncio.to_thread``; calls
that block for a run's lifetime (waiting for its exit, stopping it with a long
grace) run in a thread of their own, so they never starve the default executor.

A run that holds a lease from the leader gets a lease guard next to its container,
which stops the container once the lease has passed, even with the daemon down,
and writes why (``lease_stop.json``) before it does; :meth:`DockerRuntime.wait` and
:meth:`DockerRuntime.recover` then report the run lost, with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from murmur.node.agent.runtimes.accounts import READ, require_access
from murmur.node.agent.runtimes.base import (
    LaunchSpec,
    RecoveredRun,
    RunExit,
    RunFiles,
    RunFilesOf,
    RunHandle,
    RuntimeStartError,
)
from murmur.node.agent.runtimes.docker_container import container_options
from murmur.node.agent.runtimes.docker_engine import (
    DEFAULT_DOCKER_HOST,
    RECONNECT_SECONDS,
    engine_errors,
    engine_reason,
    not_found_error,
    open_client,
    unix_socket_refusal,
)
from murmur.node.agent.runtimes.docker_labels import LABEL_NODE, LABEL_RUN
from murmur.node.agent.runtimes.docker_lease import (
    lease_guard_running,
    lease_stop_reason,
    spawn_lease_guard,
)
from murmur.node.agent.runtimes.docker_logs import LogPump, resume_points
from murmur.node.agent.runtimes.lease_file import mark_container_removed, read_lease
from murmur.node.agent.runtimes.run_files import write_json_atomic

if TYPE_CHECKING:
    from docker import DockerClient

_log = logging.getLogger("murmur.node.runtimes")

T = TypeVar("T")

MAX_POOL_CONNECTIONS = 256
"""Each run holds up to three engine connections (wait, stdout, stderr)."""

LOG_DRAIN_SECONDS = 10.0
"""After a container ends: how long its log pump may take to write the rest."""


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
        self._docker: DockerClient | None = None
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
            except not_found_error():
                result = RunExit(None, "lost: container removed outside murmur")
                await asyncio.to_thread(self._conclude, handle.run_id, files, result)
                return result
            except engine_errors() as exc:
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

    def _client(self) -> DockerClient:
        """The SDK client, made on first use (making it asks the engine for its version)."""
        with self._client_lock:
            if self._closed:
                import docker.errors

                raise docker.errors.DockerException("the docker runtime is closed")
            if self._docker is None:
                self._docker = open_client(self._host, max_pool_size=MAX_POOL_CONNECTIONS)
            return self._docker

    def _available(self) -> tuple[bool, str]:
        if (refusal := unix_socket_refusal(self._host)) is not None:
            # Before the SDK: a node without an engine keeps it unloaded.
            return False, f"docker: no engine answering at {self._host}: {refusal}"
        try:
            client = self._client()
            client.ping()
            version = client.version().get("Version", "?")
        except engine_errors() as exc:
            return False, f"docker: no engine answering at {self._host}: {engine_reason(exc)}"
        return True, f"docker: engine {version} at {self._host}"

    def _start(self, spec: LaunchSpec) -> str:
        import docker.errors

        image = spec.image
        for dataset in spec.datasets:
            # The container's processes run with the account's uid and groups: a
            # dataset they cannot read is a refusal now, not an error in the job.
            require_access(dataset.host_path, spec.account, READ, what=f"dataset {dataset.name}")
        try:
            spec.files.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RuntimeStartError(
                f"cannot create the run's log directory {spec.files.log_dir}: {exc.strerror or exc}"
            ) from exc
        try:
            client = self._client()
        except engine_errors() as exc:
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
        except engine_errors() as exc:
            raise RuntimeStartError(
                f"docker: cannot look up image {image}: {engine_reason(exc)}"
            ) from exc
        try:
            options = container_options(
                spec,
                node_name=self._node,
                network_mode=self._network_mode,
                real_gpus=self._real_gpus,
            )
            container = client.containers.create(image, **options)
        except engine_errors() as exc:
            raise RuntimeStartError(
                f"docker: cannot create the container for run {spec.run_id}: {engine_reason(exc)}"
            ) from exc
        try:
            container.start()
        except engine_errors() as exc:
            with contextlib.suppress(*engine_errors()):
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
            with contextlib.suppress(*engine_errors()):
                container.remove(force=True)
            raise RuntimeStartError(
                f"cannot write the run's log in {spec.files.log_dir}: {exc.strerror or exc}"
            ) from exc
        self._ensure_guard(spec.run_id, container_id, spec.files)
        return container_id

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
        except not_found_error():
            reason = lease_stop_reason(run_dir, handle.container_id, None)
            return RunExit(None, reason or "lost: container removed outside murmur")
        except engine_errors():
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
        except not_found_error():
            return
        except engine_errors() as exc:
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
        except not_found_error():
            return True
        except engine_errors() as exc:
            _log.error(
                "cannot remove a container", extra={"run_id": run_id, "error": engine_reason(exc)}
            )
            return False
        return True

    def _recover(self, known: list[RunHandle], files_of: RunFilesOf) -> list[RecoveredRun]:
        ours = [handle for handle in known if handle.runtime == self.name]
        try:
            if not ours and (refusal := unix_socket_refusal(self._host)) is not None:
                # No engine and no container run to look for: a node without Docker.
                _log.info(
                    "no docker engine: no container runs to recover",
                    extra={"host": self._host, "error": refusal},
                )
                return []
            containers = self._client().api.containers(
                all=True, filters={"label": f"{LABEL_NODE}={self._node}"}
            )
        except engine_errors() as exc:
            # Without the engine nothing can be told; the runs stay unresolved rather
            # than lost, and the manager's wait() keeps asking the engine.
            _log.error(
                "cannot list this node's containers to recover runs",
                extra={"host": self._host, "error": engine_reason(exc), "runs": len(ours)},
            )
            return [RecoveredRun(handle, None) for handle in ours]
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
        except not_found_error():
            result = self._gone(handle, files)
            record_exit(files, result)
            return RecoveredRun(handle, result)
        except engine_errors() as exc:
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
