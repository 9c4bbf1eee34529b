"""Ctrl-C for a child process, whatever the test run was started with."""

from __future__ import annotations

import signal


def interruptible() -> None:
    """A ``Popen`` ``preexec_fn``: SIGINT's default disposition in the child.

    A test run started in the background of a shell without job control (``make test
    &``, ``nohup``, some CI runners) ignores SIGINT, and an ignored signal stays ignored
    across ``exec``: a Python child then keeps it ignored, and never sees the Ctrl-C
    that a test sends it (the test waited its 30 s and failed, and its child ran on).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
