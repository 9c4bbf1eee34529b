"""The process runtime: jobs run as plain processes on the node, in a virtualenv
or conda env if asked, each under a supervisor process of its own.

Every run gets a supervisor (:mod:`murmur.node.agent.runtimes.supervisor`) in its own
session, so the run survives a kill -9 of the daemon: the supervisor keeps
writing the output to disk and records the exit code in ``exit.json``.
Supervisors are forked by the runtime's fork server
(:mod:`murmur.node.agent.runtimes.forkserver`), which has the supervisor's code loaded
already: a fresh interpreter per run cost 40-60 ms of CPU, a fork about 1 ms.
If the fork server fails, the run's supervisor is started as a fresh
interpreter instead. After a
restart :meth:`ProcessRuntime.recover` tells, from the files in each run's
directory and ``/proc``, which runs still go on, which ended meanwhile (and
how), and which were lost; it kills any live run the node does not know about.

Pids are never trusted alone: every check and every signal goes through
:mod:`murmur.node.agent.runtimes.procfs`, which compares the start time recorded when the
process was started, so a reused pid is never signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from murmur.node.agent.runtimes.accounts import EXECUTE, READ, WRITE, require_access
from murmur.node.agent.runtimes.base import (
    LaunchSpec,
    RecoveredRun,
    RunExit,
    RunFilesOf,
    RunHandle,
    RuntimeStartError,
    gang_environment,
    port_environment,
)
from murmur.node.agent.runtimes.detached import PACKAGE_ROOT, spawn_module
from murmur.node.agent.runtimes.forkserver import FORKSERVER_LOG, ForkServer, ForkServerError
from murmur.node.agent.runtimes.procfs import (
    is_running,
    process_start_time,
    signal_group,
    signal_process,
)
from murmur.node.agent.runtimes.run_files import (
    CHILD_FILE,
    EXIT_FILE,
    LAUNCH_FILE,
    SUPERVISOR_FILE,
    SUPERVISOR_LOG,
    Launch,
    read_json,
    write_json_atomic,
)
from murmur.node.agent.runtimes.stop_notice import NOTICE_FILE

_log = logging.getLogger("murmur.node.runtimes")

START_TIMEOUT_SECONDS = 10.0
"""How long the supervisor may take to start the job (a cold Python start is ~50 ms)."""

KILL_WAIT_SECONDS = 5.0
"""After SIGKILL: how long to wait for the supervisor to record the exit."""

POLL_SECONDS = 0.2
"""Polling period where no pidfd can be had (old kernels)."""

INHERITED_ENV = ("PATH", "HOME", "LANG", "TZ", "USER")
"""What a job inherits from the daemon's environment; nothing else (the daemon's
own secrets and settings stay out)."""

LOST_REASON = "lost: the run's supervisor ended without recording an exit"
REAPED_REASON = "reaped: the node did not know this run after a restart"

_SUPERVISOR_STARTED_FD = 3
"""Where a supervisor started as a fresh interpreter finds its end of the started pipe."""


def dataset_variable(name: str) -> str:
    """``MURMUR_DATASET_<NAME>``: the name uppercased, anything but A-Z and 0-9 as ``_``."""
    return "MURMUR_DATASET_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def job_environment(spec: LaunchSpec, inherited: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a run.

    Layers, later ones win: a safe part of the daemon's environment
    (``INHERITED_ENV``), the account's ``HOME``, ``USER`` and ``LOGNAME``,
    ``PYTHONUNBUFFERED=1`` (so Python output reaches the log
    as it is printed; the user may turn it off), the user's variables, the
    virtualenv or conda env, then Murmur's own variables, which the user cannot
    override: ``MURMUR_JOB_ID``, ``MURMUR_RUN_ID``, ``MURMUR_STOP_GRACE_SECONDS``
    (between SIGTERM and SIGKILL when the run is stopped), ``MURMUR_PREEMPT_DEADLINE``
    (the stop notice: :mod:`murmur.node.agent.runtimes.stop_notice`), a service
    replica's ``PORT``, a gang's torchrun
    variables (``gang_environment``), ``CUDA_VISIBLE_DEVICES`` (empty
    without GPUs, so a CPU job cannot take one), ``CUDA_DEVICE_ORDER=PCI_BUS_ID``
    (the node's GPU indices are NVML's, in PCI order; CUDA's default order
    differs) and one ``MURMUR_DATASET_<NAME>`` per dataset.
    """
    env = {key: inherited[key] for key in INHERITED_ENV if key in inherited}
    if spec.account is not None:
        # Who the job runs as, as a login would set it (the user may override them).
        env["HOME"] = spec.account.home
        env["USER"] = env["LOGNAME"] = spec.account.name
    env["PYTHONUNBUFFERED"] = "1"
    env.update(spec.env)
    prefix = spec.venv if spec.venv is not None else spec.conda_env
    if prefix is not None:
        bin_dir = str(prefix / "bin")
        env["PATH"] = f"{bin_dir}:{env['PATH']}" if env.get("PATH") else bin_dir
        env.pop("PYTHONHOME", None)  # as `activate` does: it would override the env's prefix
    if spec.venv is not None:
        env["VIRTUAL_ENV"] = str(spec.venv)
    if spec.conda_env is not None:
        env["CONDA_PREFIX"] = str(spec.conda_env)
    env["MURMUR_JOB_ID"] = spec.job_id
    env["MURMUR_RUN_ID"] = spec.run_id
    env["MURMUR_STOP_GRACE_SECONDS"] = f"{spec.stop_grace_seconds:g}"
    env.update(gang_environment(spec.gang))
    if spec.stop_notice_dir is not None:
        env["MURMUR_PREEMPT_DEADLINE"] = str(spec.stop_notice_dir / NOTICE_FILE)
    env.update(port_environment(spec))
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(index) for index in spec.gpu_indices)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    for dataset in spec.datasets:
        env[dataset_variable(dataset.name)] = str(dataset.host_path)
    return env


def check_launch_paths(spec: LaunchSpec) -> None:
    """Checks the virtualenv, conda env and working directory exist and are what they say.

    Raises:
        RuntimeStartError: one of them is not usable; the message says which and why.
    """
    if spec.venv is not None and spec.conda_env is not None:
        raise RuntimeStartError("a run uses a virtualenv or a conda env, not both")
    if spec.venv is not None and not (spec.venv / "bin" / "python").exists():
        raise RuntimeStartError(f"not a virtualenv: {spec.venv} (no bin/python)")
    if spec.conda_env is not None and not (spec.conda_env / "conda-meta").is_dir():
        raise RuntimeStartError(f"not a conda env: {spec.conda_env} (no conda-meta/)")
    if spec.workdir is not None:
        workdir = Path(spec.workdir)
        if not workdir.exists():
            raise RuntimeStartError(f"working directory not found: {workdir}")
        if not workdir.is_dir():
            raise RuntimeStartError(f"working directory is not a directory: {workdir}")


def check_account_access(spec: LaunchSpec) -> None:
    """Checks the run's account may use its working dir, environment and datasets.

    The supervisor changes into the working dir while still root, so without this
    check a job could be handed a directory its account could never enter.

    Raises:
        AccountRefusedError: one of them is out of the account's reach.
    """
    account = spec.account
    if spec.workdir is not None:
        require_access(Path(spec.workdir), account, READ | EXECUTE, what="working directory")
    for prefix, what in ((spec.venv, "virtualenv"), (spec.conda_env, "conda env")):
        if prefix is not None:
            require_access(prefix / "bin", account, READ | EXECUTE, what=what)
    for dataset in spec.datasets:
        require_access(dataset.host_path, account, READ, what=f"dataset {dataset.name}")


def _identity(data: dict[str, Any] | None) -> tuple[int, int | None] | None:
    """(pid, start time) from ``supervisor.json`` or ``child.json``."""
    if data is None:
        return None
    pid, start_time = data.get("pid"), data.get("start_time")
    if not isinstance(pid, int):
        return None
    return pid, start_time if isinstance(start_time, int) else None


def _read_exit(run_dir: Path) -> RunExit | None:
    data = read_json(run_dir / EXIT_FILE)
    if data is None:
        return None
    exit_code = data.get("exit_code")
    return RunExit(
        exit_code=exit_code if isinstance(exit_code, int) else None,
        reason=str(data.get("reason", "")),
    )


def _record_exit(run_dir: Path, exit_code: int | None, reason: str) -> None:
    """Writes ``exit.json`` unless the supervisor did (its record is the better one)."""
    if (run_dir / EXIT_FILE).exists():
        return
    with contextlib.suppress(OSError):
        write_json_atomic(
            run_dir / EXIT_FILE,
            {"exit_code": exit_code, "reason": reason, "finished_at": time.time()},
        )


def _kill_job_group(run_dir: Path) -> bool:
    """SIGKILLs what is left of the run's job (its process group). Returns whether
    a signal was sent."""
    child = _identity(read_json(run_dir / CHILD_FILE))
    if child is None:
        return False
    pid, start_time = child
    return signal_group(pid, start_time, signal.SIGKILL)


def _end_job_group(run_dir: Path) -> None:
    """SIGKILLs what is left of the run's job and waits (a bounded while, in a
    worker thread) until its leader is gone: a killed job dies asynchronously, and
    the run must not be reported ended, and its GPUs handed on, while it lives."""
    if not _kill_job_group(run_dir):
        return
    deadline = time.monotonic() + KILL_WAIT_SECONDS
    while _job_is_running(run_dir):
        if time.monotonic() >= deadline:
            _log.warning(
                "a killed job is still running",
                extra={"event": "run.job_survives_kill", "run_id": run_dir.name},
            )
            return
        time.sleep(0.005)


def _job_is_running(run_dir: Path) -> bool:
    child = _identity(read_json(run_dir / CHILD_FILE))
    return child is not None and is_running(*child)


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


class ProcessRuntime:
    """Runs jobs as processes on this node; see the module docstring."""

    name = "process"

    def __init__(
        self,
        *,
        runs_dir: Path,
        node_name: str,
        scratch_dir: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        """
        Args:
            runs_dir: where run directories live (``<data_dir>/runs``); scanned
                by :meth:`recover` for runs the node does not know.
            scratch_dir: where a run without a working dir gets one of its own,
                owned by its account (``<data_dir>/work``; default: next to
                ``runs_dir``). Not inside ``runs_dir``: that stays the daemon's
                alone (launch files hold secrets), while the job must reach its
                scratch dir by path.
            node_name: this node, named in messages.
            python: the interpreter that runs the fork server and the
                supervisors (needs the ``node`` package importable, which the
                daemon's own has).
        """
        self._runs_dir = runs_dir
        self._scratch_dir = scratch_dir if scratch_dir is not None else runs_dir.parent / "work"
        self._scratch_ready = False
        """Whether the scratch root exists with its mode: set up by the first run that needs it."""
        self._node_name = node_name
        self._python = python
        self._fork_server = ForkServer(
            python=python, package_root=PACKAGE_ROOT, log_path=runs_dir / FORKSERVER_LOG
        )
        self._run_dirs: dict[str, Path] = {}
        self._children: set[int] = set()
        """Supervisors this process started itself (without the fork server) and
        has not reaped yet."""

    @property
    def fork_server_pid(self) -> int | None:
        """The fork server's pid while it runs."""
        return self._fork_server.pid

    def close(self) -> None:
        """Stops the fork server; runs go on. Without it, the fork server exits
        when this process does."""
        self._fork_server.close()

    async def available(self) -> tuple[bool, str]:
        """Always: without the fork server, supervisors start as fresh interpreters.
        Starts the fork server if it is not running, so the next run need not wait."""
        if self._fork_server.pid is None:
            await asyncio.to_thread(self._fork_server.warm)
        return True, ""

    async def start(self, spec: LaunchSpec) -> RunHandle:
        self._reap_exited()
        run_dir = spec.files.directory
        # One byte here once the job runs; end-of-file once the supervisor is gone.
        started_read, started_write = os.pipe()
        try:
            # The worker thread owns the write end from here: it closes it.
            pid, start_time = await asyncio.to_thread(self._spawn_supervisor, spec, started_write)
            handle = RunHandle(spec.run_id, self.name, pid=pid, pid_start_time=start_time)
            self._run_dirs[spec.run_id] = run_dir
            try:
                await self._started_or_failed(run_dir, started_read)
            except Exception:
                self._kill_run_now(handle, run_dir)
                await self._exited_within(pid, start_time, KILL_WAIT_SECONDS)  # nothing left
                self._reap(pid)
                self._run_dirs.pop(spec.run_id, None)
                raise
            except BaseException:  # cancelled: kill, but await nothing more
                self._kill_run_now(handle, run_dir)
                self._run_dirs.pop(spec.run_id, None)
                raise
        finally:
            os.close(started_read)
        _log.info(
            "run started",
            extra={
                "event": "run.started",
                "run_id": spec.run_id,
                "job_id": spec.job_id,
                "runtime": self.name,
                "supervisor_pid": pid,
            },
        )
        return handle

    async def wait(self, handle: RunHandle) -> RunExit:
        run_dir = self._run_dir(handle.run_id)
        if handle.pid is not None:
            await self._until_exited(handle.pid, handle.pid_start_time)
            self._reap(handle.pid)
        return await asyncio.to_thread(self._conclude, run_dir)

    async def stop(self, handle: RunHandle, *, grace_seconds: float) -> None:
        run_dir = self._run_dir(handle.run_id)
        pid, start_time = handle.pid, handle.pid_start_time
        if pid is not None and signal_process(pid, start_time, signal.SIGTERM):
            # The supervisor forwards SIGTERM to the job's group: the job gets it once.
            if not await self._exited_within(pid, start_time, grace_seconds):
                await asyncio.to_thread(_kill_job_group, run_dir)
                if not await self._exited_within(pid, start_time, KILL_WAIT_SECONDS):
                    _log.warning(
                        "run supervisor does not respond; killing it",
                        extra={"event": "run.supervisor_killed", "run_id": handle.run_id},
                    )
                    signal_process(pid, start_time, signal.SIGKILL)
                    await self._exited_within(pid, start_time, KILL_WAIT_SECONDS)
            self._reap(pid)
            return
        # No supervisor: whatever is left of the job is on its own.
        self._reap(pid)
        child = await asyncio.to_thread(lambda: _identity(read_json(run_dir / CHILD_FILE)))
        if child is None or not is_running(*child):
            await asyncio.to_thread(_end_job_group, run_dir)  # leftovers of its group
            return
        signal_group(*child, signal.SIGTERM)
        await self._exited_within(*child, grace_seconds)
        await asyncio.to_thread(_end_job_group, run_dir)

    async def recover(self, known: list[RunHandle], files_of: RunFilesOf) -> list[RecoveredRun]:
        """Handles of other runtimes are left out of the answer, but their runs
        count as known: only run directories no handle names are reaped."""
        return await asyncio.to_thread(self._recover, known, files_of)

    async def cleanup(self, handle: RunHandle) -> None:
        """A process run holds nothing once it has ended (its files stay for the
        logs); the runtime only forgets where the run's directory is."""
        self._run_dirs.pop(handle.run_id, None)

    # -- start -----------------------------------------------------------------

    def _spawn_supervisor(self, spec: LaunchSpec, started_fd: int) -> tuple[int, int | None]:
        """Validates the spec, writes ``launch.json`` and starts the supervisor, which
        gets a copy of ``started_fd`` (in a worker thread: file system calls, a fork).
        Closes ``started_fd``: only the supervisor holds the write end afterwards."""
        try:
            return self._spawn_supervisor_with(spec, started_fd)
        finally:
            os.close(started_fd)

    def _spawn_supervisor_with(self, spec: LaunchSpec, started_fd: int) -> tuple[int, int | None]:
        check_launch_paths(spec)
        check_account_access(spec)
        run_dir = spec.files.directory
        if (run_dir / LAUNCH_FILE).exists():
            raise RuntimeStartError(f"run {spec.run_id} was already started on {self._node_name}")
        account = spec.account
        try:
            run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            if spec.workdir is None:
                scratch = self._make_scratch_dir(spec)
            # Absolute: the supervisor runs from "/".
            workdir = os.path.abspath(spec.workdir if spec.workdir is not None else scratch)
            launch = Launch(
                run_id=spec.run_id,
                argv=spec.argv,
                shell=spec.shell,
                env=job_environment(spec, os.environ),
                workdir=workdir,
                memory_bytes=spec.memory_bytes,
                cpus=spec.cpus,
                uid=None if account is None else account.uid,
                gid=None if account is None else account.gid,
                groups=() if account is None else account.groups,
                readonly_paths=tuple(str(dataset.host_path.resolve()) for dataset in spec.datasets),
            )
            # The environment may hold the user's secrets (API keys): owner only.
            write_json_atomic(run_dir / LAUNCH_FILE, launch.to_json(), mode=0o600)
        except OSError as exc:
            raise RuntimeStartError(f"cannot start the run on {self._node_name}: {exc}") from exc
        try:
            return self._fork_server.spawn(run_dir.resolve(), started_fd)
        except ForkServerError as exc:
            _log.warning(
                "starting the run's supervisor without the fork server: %s",
                exc,
                extra={"event": "run.forkserver_failed", "run_id": spec.run_id},
            )
        # No supervisor of this run came from the fork server, nor will: one of our own.
        return self._spawn_supervisor_process(run_dir, started_fd)

    def _make_scratch_dir(self, spec: LaunchSpec) -> Path:
        """``<scratch_dir>/<run_id>``, private to the run's account. The scratch root
        is traversable (0711) so that the account reaches its own by path, but lists
        nothing: another account can neither see nor enter a run's scratch dir."""
        if not self._scratch_ready:
            self._scratch_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
            self._scratch_dir.chmod(0o711)  # mkdir's mode passes through the umask
            self._scratch_ready = True
        scratch = self._scratch_dir / spec.run_id
        scratch.mkdir(mode=0o700, exist_ok=True)
        if spec.account is not None:
            os.chown(scratch, spec.account.uid, spec.account.gid)
        # A data dir below a private directory would hand the job a working dir it
        # cannot name: say so instead.
        require_access(scratch, spec.account, READ | WRITE | EXECUTE, what="scratch directory")
        return scratch

    def _spawn_supervisor_process(self, run_dir: Path, started_fd: int) -> tuple[int, int | None]:
        """Starts the supervisor as a fresh interpreter: the way round a failed fork
        server. ``-S``: it needs nothing from site-packages, and ``site`` is a third of
        its start-up."""
        try:
            pid = spawn_module(
                self._python,
                ["-S", "-P"],
                "murmur.node.agent.runtimes.supervisor",
                [str(run_dir.resolve()), str(_SUPERVISOR_STARTED_FD)],
                log_path=run_dir / SUPERVISOR_LOG,
                inherit_fds=[(started_fd, _SUPERVISOR_STARTED_FD)],
            )
        except OSError as exc:
            raise RuntimeStartError(f"cannot start the run on {self._node_name}: {exc}") from exc
        self._children.add(pid)
        # Our unreaped child: its pid cannot be reused, so this is its start time.
        return pid, process_start_time(pid)

    async def _started_or_failed(self, run_dir: Path, started_fd: int) -> None:
        """Returns once the supervisor has started the job (``child.json``).

        Waits for the started pipe: the supervisor writes a byte once the job runs,
        and every copy of the write end is closed once the supervisor is gone.

        Raises:
            RuntimeStartError: the job could not be started, or the supervisor
                failed or took too long.
        """
        loop = asyncio.get_running_loop()
        signalled = loop.create_future()

        def on_readable() -> None:
            if not signalled.done():
                signalled.set_result(None)

        loop.add_reader(started_fd, on_readable)
        try:
            async with asyncio.timeout(START_TIMEOUT_SECONDS):
                await signalled
        except TimeoutError:
            raise RuntimeStartError(
                f"the run did not start within {START_TIMEOUT_SECONDS:g} s on {self._node_name}"
            ) from None
        finally:
            loop.remove_reader(started_fd)
        if (run_dir / CHILD_FILE).exists():
            return
        ended = _read_exit(run_dir)
        if ended is not None:
            raise RuntimeStartError(ended.reason)
        detail = _last_line(run_dir / SUPERVISOR_LOG) or "no output"
        raise RuntimeStartError(f"the run's supervisor failed to start: {detail}")

    def _kill_run_now(self, handle: RunHandle, run_dir: Path) -> None:
        """Kills a run that failed to start, without awaiting (we may be cancelled)."""
        _kill_job_group(run_dir)
        if handle.pid is not None:
            signal_process(handle.pid, handle.pid_start_time, signal.SIGKILL)
            self._reap(handle.pid)  # if it is not dead yet, the next start reaps it

    def _reap_exited(self) -> None:
        for pid in list(self._children):
            self._reap(pid)

    # -- wait ------------------------------------------------------------------

    async def _until_exited(self, pid: int, start_time: int | None) -> None:
        """Returns once the process (pid, start time) has exited.

        A pidfd tells the event loop when it exits, child of ours or not;
        where pidfds are missing, it polls.
        """
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        except (OSError, AttributeError):
            # No pidfd (kernel < 5.3): nothing to wait on but /proc.
            while is_running(pid, start_time):  # noqa: ASYNC110
                await asyncio.sleep(POLL_SECONDS)
            return
        try:
            # The pidfd pins the process: if it is not ours now, ours is gone.
            if not is_running(pid, start_time):
                return
            loop = asyncio.get_running_loop()
            exited = loop.create_future()

            def on_exit() -> None:
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(pidfd, on_exit)
            try:
                await exited
            finally:
                loop.remove_reader(pidfd)
        finally:
            os.close(pidfd)

    async def _exited_within(self, pid: int, start_time: int | None, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self._until_exited(pid, start_time)
        except TimeoutError:
            return False
        return True

    def _reap(self, pid: int | None) -> None:
        """Collects a supervisor of ours that has exited, so no zombie is left."""
        if pid is None or pid not in self._children:
            return
        try:
            reaped, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            reaped = pid
        if reaped == pid:
            self._children.discard(pid)

    def _conclude(self, run_dir: Path) -> RunExit:
        """How a run whose supervisor is gone ended: ``exit.json``, or lost (then
        what may be left of the job is killed, and that is recorded)."""
        ended = _read_exit(run_dir)
        if ended is not None:
            return ended
        _end_job_group(run_dir)
        _record_exit(run_dir, None, LOST_REASON)
        return _read_exit(run_dir) or RunExit(None, LOST_REASON)

    def _run_dir(self, run_id: str) -> Path:
        return self._run_dirs.get(run_id, self._runs_dir / run_id)

    # -- recover ---------------------------------------------------------------

    def _recover(self, known: list[RunHandle], files_of: RunFilesOf) -> list[RecoveredRun]:
        recovered = []
        for handle in known:
            if handle.runtime != self.name:
                continue
            run_dir = files_of(handle.run_id).directory
            self._run_dirs[handle.run_id] = run_dir
            if handle.pid is None:
                # The daemon died after the supervisor started, before the store had its
                # pid: the supervisor's own record finds it. Taken for lost, its job
                # would be killed, or run on unseen if it had not started yet.
                supervisor = _identity(read_json(run_dir / SUPERVISOR_FILE))
                if supervisor is not None and is_running(*supervisor):
                    pid, start_time = supervisor
                    handle = dataclasses.replace(handle, pid=pid, pid_start_time=start_time)
            if handle.pid is not None and is_running(handle.pid, handle.pid_start_time):
                recovered.append(RecoveredRun(handle, None))
            else:
                recovered.append(RecoveredRun(handle, self._conclude(run_dir)))
        self._reap_unknown({handle.run_id for handle in known})
        return recovered

    def _reap_unknown(self, known_ids: set[str]) -> None:
        """Kills every live run under ``runs_dir`` that no known handle names: a
        run started just before a crash, before its handle was stored, must not
        run on unseen (its job would run twice once it is placed again)."""
        try:
            run_dirs = [entry for entry in self._runs_dir.iterdir() if entry.is_dir()]
        except FileNotFoundError:
            return
        for run_dir in run_dirs:
            if run_dir.name in known_ids:
                continue
            supervisor = _identity(read_json(run_dir / SUPERVISOR_FILE))
            supervisor_alive = supervisor is not None and is_running(*supervisor)
            if not supervisor_alive and not _job_is_running(run_dir):
                continue
            _log.warning(
                "reaping a run this node does not know",
                extra={"event": "run.reaped", "run_id": run_dir.name, "node": self._node_name},
            )
            _kill_job_group(run_dir)
            if supervisor is not None:
                signal_process(*supervisor, signal.SIGKILL)
            deadline = time.monotonic() + KILL_WAIT_SECONDS
            while time.monotonic() < deadline and (
                (supervisor is not None and is_running(*supervisor)) or _job_is_running(run_dir)
            ):
                time.sleep(0.02)
            _record_exit(run_dir, None, REAPED_REASON)
