"""A real Docker engine for the tests, and a tiny image to run on it.

The test machines have no registry, so the image is built here: a rootfs
tarball holding Debian's static busybox and its applet links, imported as
``murmur-test/busybox:latest``. The engine is, in order of preference:

1. the one ``DOCKER_HOST`` names, if it answers;
2. our own test engine on ``unix:///run/murmur-test-docker.sock``, if it answers
   (started by an earlier session and left running);
3. our own test engine, started now (root and ``dockerd`` needed) with no
   bridge and no iptables rules: test containers run with ``network_mode="none"``.

If none of these works the Docker tests skip with the reason, except under
``CI=true``, where they fail: CI must run them.

Wire the session fixture into ``tests/conftest.py`` with::

    from tests.support.docker_engine import docker_engine_fixture  # noqa: F401

after which tests ask for ``docker_engine`` (a :class:`DockerEngine`).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import io
import os
import shutil
import struct
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import docker
import docker.errors
import pytest
import requests

from murmur.node.agent.runtimes.docker_engine import check_unix_socket

OWN_SOCKET = "/run/murmur-test-docker.sock"
OWN_HOST = f"unix://{OWN_SOCKET}"
DATA_ROOT = "/var/lib/murmur-test-docker"
EXEC_ROOT = "/run/murmur-test-docker-exec"
PIDFILE = "/run/murmur-test-docker.pid"
ENGINE_LOG = Path("/run/murmur-test-docker.log")
START_LOCK = Path("/run/murmur-test-docker.lock")
START_TIMEOUT_SECONDS = 30.0

IMAGE_REPOSITORY = "murmur-test/busybox"
IMAGE = f"{IMAGE_REPOSITORY}:latest"
BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh", "echo", "cat", "sleep", "env", "true", "false", "ls", "printf", "test", "[",
    "kill", "id", "mkdir", "rm", "touch", "pwd", "grep", "head", "tail", "wc", "seq",
    "date", "yes", "dd", "stat", "nproc", "tr", "cut", "sort", "uniq", "xargs", "expr",
)  # fmt: skip
IMAGE_VERSION_LABEL = "murmur-test.rootfs"
IMAGE_VERSION = hashlib.sha256("\n".join(APPLETS).encode()).hexdigest()[:12]
"""A test image built from another applet list is built again."""


@dataclass(frozen=True)
class DockerEngine:
    host: str
    """``DOCKER_HOST``-style address, e.g. ``unix:///run/murmur-test-docker.sock``."""
    image: str
    """A locally present image with busybox: ``sh``, ``echo``, ``sleep``, ..."""


class NoEngineError(Exception):
    """No engine can be had; the message says why."""


class EngineSource(enum.Enum):
    DOCKER_HOST = "the engine DOCKER_HOST names"
    OWN_RUNNING = "our test engine, already running"
    OWN_START = "our test engine, to be started"
    NONE = "no engine"


def choose_engine_source(
    *,
    docker_host: str | None,
    docker_host_answers: bool,
    own_answers: bool,
    is_root: bool,
    dockerd: str | None,
) -> tuple[EngineSource, str]:
    """Which engine the tests use, and if none, why (pure: the pings are done by the caller)."""
    if docker_host and docker_host_answers:
        return EngineSource.DOCKER_HOST, ""
    if own_answers:
        return EngineSource.OWN_RUNNING, ""
    tried = f"DOCKER_HOST={docker_host} does not answer; " if docker_host else ""
    if not is_root:
        return EngineSource.NONE, f"{tried}not root, so no test dockerd can be started"
    if dockerd is None:
        return EngineSource.NONE, (
            f"{tried}dockerd is not installed (run scripts/install-test-deps.sh as root)"
        )
    return EngineSource.OWN_START, ""


def engine_unavailable(reason: str) -> NoReturn:
    """Skips the test with ``reason``, or fails it under ``CI=true`` (CI must run Docker tests)."""
    message = f"the Docker tests cannot run: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: the Docker tests must run, not skip)")
    pytest.skip(message)


def answers(host: str) -> bool:
    """Whether an engine answers a ping at ``host`` (within a few seconds)."""
    try:
        check_unix_socket(host)  # the SDK leaks the socket of a refused connection
        client = docker.DockerClient(base_url=host, version="auto", timeout=5)
    except (docker.errors.DockerException, requests.RequestException, OSError):
        return False
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, requests.RequestException, OSError):
        return False
    finally:
        client.close()


def is_static_executable(path: Path) -> bool:
    """Whether an ELF file has no program interpreter (runs in an empty rootfs)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        return False
    is_64 = data[4] == 2
    order = "<" if data[5] == 1 else ">"
    if is_64:
        (phoff,) = struct.unpack_from(order + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x36)
    else:
        (phoff,) = struct.unpack_from(order + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x2A)
    pt_interp = 3
    for index in range(phnum):
        (p_type,) = struct.unpack_from(order + "I", data, phoff + index * phentsize)
        if p_type == pt_interp:
            return False
    return True


def busybox_rootfs(busybox: Path) -> bytes:
    """A tar of a minimal rootfs: ``/bin/busybox``, its applet links, ``/tmp``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in (("bin", 0o755), ("tmp", 0o1777), ("etc", 0o755)):
            entry = tarfile.TarInfo(directory)
            entry.type = tarfile.DIRTYPE
            entry.mode = mode
            tar.addfile(entry)
        binary = busybox.read_bytes()
        entry = tarfile.TarInfo("bin/busybox")
        entry.size = len(binary)
        entry.mode = 0o755
        tar.addfile(entry, io.BytesIO(binary))
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        entry = tarfile.TarInfo("etc/passwd")
        entry.size = len(passwd)
        entry.mode = 0o644
        tar.addfile(entry, io.BytesIO(passwd))
    return buffer.getvalue()


def ensure_image(host: str) -> None:
    """Imports :data:`IMAGE` from the static busybox unless the engine has it."""
    client = docker.DockerClient(base_url=host, version="auto", timeout=60)
    try:
        outdated = None
        try:
            present = client.images.get(IMAGE)
            if (present.labels or {}).get(IMAGE_VERSION_LABEL) == IMAGE_VERSION:
                return
            outdated = present.id
        except docker.errors.ImageNotFound:
            pass
        if not BUSYBOX.exists():
            raise NoEngineError(
                f"{BUSYBOX} not found to build {IMAGE} (install busybox-static, e.g. with "
                "scripts/install-test-deps.sh)"
            )
        if not is_static_executable(BUSYBOX):
            raise NoEngineError(
                f"{BUSYBOX} is not statically linked, so it cannot make {IMAGE} "
                "(install busybox-static instead of busybox)"
            )
        client.api.import_image_from_data(
            busybox_rootfs(BUSYBOX),
            repository=IMAGE_REPOSITORY,
            tag="latest",
            changes=[
                'CMD ["/bin/sh"]',
                "ENV PATH=/bin",
                f"LABEL {IMAGE_VERSION_LABEL}={IMAGE_VERSION}",
            ],
        )
        client.images.get(IMAGE)
        if outdated is not None:
            with contextlib.suppress(docker.errors.APIError):  # still used by a container
                client.images.remove(outdated)
    finally:
        client.close()


@contextlib.contextmanager
def _start_lock() -> Iterator[None]:
    """Serialises engine start-up and image import between test processes
    (best effort: without write access to /run there is no engine of ours to start)."""
    try:
        handle = START_LOCK.open("a")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _engine_log_tail(lines: int = 5) -> str:
    try:
        text = ENGINE_LOG.read_text(errors="replace")
    except OSError:
        return "(no engine log)"
    return " | ".join(text.strip().splitlines()[-lines:])


def start_own_engine(dockerd: str) -> None:
    """Starts the test dockerd, detached so it outlives this session, and waits until
    it answers. Reuses a dockerd whose pidfile names a live process (still starting)."""
    if not _pidfile_process_alive():
        ENGINE_LOG.parent.mkdir(parents=True, exist_ok=True)
        # The shell exits at once and dockerd is re-parented to init: no child of
        # ours stays behind (a Popen of a live process warns when collected).
        subprocess.run(
            [
                "/bin/sh",
                "-c",
                f'"$0" "$@" >>{ENGINE_LOG} 2>&1 </dev/null &',
                dockerd,
                "--host",
                OWN_HOST,
                "--data-root",
                DATA_ROOT,
                "--exec-root",
                EXEC_ROOT,
                "--pidfile",
                PIDFILE,
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
            ],
            check=True,
            start_new_session=True,
            # dockerd finds runc (in /usr/sbin on Debian) on its PATH.
            env={
                **os.environ,
                "PATH": f"{os.environ.get('PATH', '/usr/bin:/bin')}:/usr/sbin:/sbin",
            },
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if answers(OWN_HOST):
            return
        time.sleep(0.25)
    raise NoEngineError(
        f"the test dockerd did not answer at {OWN_HOST} within {START_TIMEOUT_SECONDS:.0f} s; "
        f"{ENGINE_LOG}: {_engine_log_tail()}"
    )


def find_dockerd() -> str | None:
    """``dockerd`` on PATH, or where Debian puts it (sbin is often off a CI user's PATH)."""
    found = shutil.which("dockerd")
    if found is None and os.access("/usr/sbin/dockerd", os.X_OK):
        found = "/usr/sbin/dockerd"
    return found


def _pidfile_process_alive() -> bool:
    try:
        pid = int(Path(PIDFILE).read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        return "dockerd" in Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return False


_engine: DockerEngine | None = None
_unavailable: str | None = None
"""Why there is no engine, once found out: later tests skip at once, not after another try."""


def docker_engine() -> DockerEngine:
    """The session's engine and test image, set up on first use (see the module docstring).

    Skips the calling test (fails it under ``CI=true``) when no engine can be had.
    """
    global _engine, _unavailable
    if _engine is not None:
        return _engine
    if _unavailable is not None:
        engine_unavailable(_unavailable)
    try:
        _engine = _set_up_engine()
    except NoEngineError as exc:
        _unavailable = str(exc)
        engine_unavailable(_unavailable)
    return _engine


def _set_up_engine() -> DockerEngine:
    docker_host = os.environ.get("DOCKER_HOST") or None
    host_answers = docker_host is not None and answers(docker_host)
    own = not host_answers and answers(OWN_HOST)
    source, reason = choose_engine_source(
        docker_host=docker_host,
        docker_host_answers=host_answers,
        own_answers=own,
        is_root=os.geteuid() == 0,
        dockerd=find_dockerd(),
    )
    if source is EngineSource.NONE:
        raise NoEngineError(reason)
    host = docker_host if source is EngineSource.DOCKER_HOST and docker_host else OWN_HOST
    if source is EngineSource.OWN_START:
        dockerd = find_dockerd()
        assert dockerd is not None
        with _start_lock():
            if not answers(OWN_HOST):
                start_own_engine(dockerd)
    with _start_lock():
        ensure_image(host)
    return DockerEngine(host=host, image=IMAGE)


@pytest.fixture(scope="session", name="docker_engine")
def docker_engine_fixture() -> DockerEngine:
    """A Docker engine with :data:`IMAGE` present; skips (fails under CI=true) without one."""
    return docker_engine()
