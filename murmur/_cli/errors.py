"""Which exceptions the CLI reports as one line, and how.

Known failures (server answers, bad local files, bad configuration) become
``murmur: error: <message>`` with exit code 1. Anything else is a bug in
murmur and keeps its traceback, so it gets reported rather than hidden.
"""

from __future__ import annotations


class CommandError(Exception):
    """A command cannot do what was asked; the message says why."""


def describe_error(exc: BaseException) -> str | None:
    """One line for an expected failure, ``None`` for a bug."""
    from murmur import MurmurError
    from murmur.certs import CertificateError

    if isinstance(exc, MurmurError | CertificateError):
        return str(exc)
    from murmur.node.agent.gpus import GpuProbeError
    from murmur.node.config import ConfigError
    from murmur.node.errors import StartupError

    if isinstance(exc, ConfigError | StartupError | GpuProbeError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    return None
