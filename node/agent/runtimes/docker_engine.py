"""The node's Docker engine as the docker runtime and the lease guard reach it: where it
is, a client for it, what its errors mean, and how it writes times.

The Docker SDK (``import docker``, and with it requests and urllib3) is imported on
first use, never at import of this module: it costs 70-80 ms, which every daemon
would pay at start, with or without an engine, and every lease guard too, though a
guard whose container ends with its lease valid never asks the engine anything.
Code that needs the SDK gets it from :func:`open_client`, :func:`engine_errors` and
:func:`not_found_error` (which an ``except`` clause calls only once an engine call
failed), or imports ``docker`` in the function that uses it. ``socket`` and
``calendar`` load on first use too: each lease guard imports this module at start,
where their 4 ms count.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from docker import DockerClient

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"

API_TIMEOUT_SECONDS = 60
"""For every engine call but the ones that last as long as a run (wait, log streams)."""

RECONNECT_SECONDS = 2.0
"""Pause before asking an engine that stopped answering again."""


@functools.cache
def engine_errors() -> tuple[type[Exception], ...]:
    """What a call to the engine raises when it refuses or cannot be reached
    (imports the SDK on the first call)."""
    import docker.errors
    import requests

    return (docker.errors.DockerException, requests.RequestException)


@functools.cache
def not_found_error() -> type[Exception]:
    """What a call to the engine raises when the container (or image) it names does not
    exist: the SDK's ``NotFound``, a kind of :func:`engine_errors` (imports the SDK on
    the first call)."""
    import docker.errors

    not_found: type[Exception] = docker.errors.NotFound
    return not_found


def unix_socket_refusal(host: str) -> str | None:
    """Why a ``unix://`` engine socket does not accept, or None (it does, or ``host``
    is not a unix socket). Needs no SDK: a node without an engine never loads it."""
    if not host.startswith("unix://"):
        return None
    import socket

    path = host.removeprefix("unix://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5.0)
        try:
            probe.connect(path)
        except OSError as exc:
            return f"cannot connect to {path}: {exc.strerror or exc}"
    return None


def check_unix_socket(host: str) -> None:
    """Fails fast, and cleanly, when a ``unix://`` engine socket does not accept.

    The SDK leaks the socket of a refused connection (its ``UnixHTTPConnection``
    does not close it), which piles up while an absent engine is polled.

    Raises:
        docker.errors.DockerException: nothing accepts connections at the socket.
    """
    refusal = unix_socket_refusal(host)
    if refusal is not None:
        import docker.errors

        raise docker.errors.DockerException(refusal)


def open_client(host: str, *, max_pool_size: int | None = None) -> DockerClient:
    """A new SDK client for the engine at ``host`` (making it asks the engine for its
    version), after :func:`check_unix_socket`.

    Args:
        max_pool_size: connections kept open to the engine; None: the SDK's default.

    Raises:
        docker.errors.DockerException: the engine does not answer.
        requests.RequestException: likewise, seen from the HTTP layer.
    """
    check_unix_socket(host)
    import docker

    if max_pool_size is None:
        return docker.DockerClient(base_url=host, version="auto", timeout=API_TIMEOUT_SECONDS)
    return docker.DockerClient(
        base_url=host,
        version="auto",
        timeout=API_TIMEOUT_SECONDS,
        max_pool_size=max_pool_size,
    )


def engine_reason(exc: BaseException) -> str:
    """One line saying why the engine refused or could not be reached."""
    explanation = getattr(exc, "explanation", None)
    text = str(explanation) if explanation else str(exc) or type(exc).__name__
    return " ".join(text.split())


def parse_engine_time(stamp: str) -> float | None:
    """Unix seconds from the engine's RFC 3339 log time (``2026-01-02T03:04:05.123456789Z``)."""
    import calendar

    stamp = stamp.strip()
    if not stamp.endswith("Z"):
        return None
    main, _, fraction = stamp[:-1].partition(".")
    try:
        seconds = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
        return seconds + (float(f"0.{fraction}") if fraction else 0.0)
    except ValueError:
        return None
