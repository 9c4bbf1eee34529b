"""The job every chaos submission runs: it records its own execution.

Run as ``python -S job_program.py RESULTS_DIR SECONDS MODE``. Appends to
``RESULTS_DIR/<MURMUR_JOB_ID>.log`` one line per event, each a single
``write`` on an ``O_APPEND`` descriptor (so lines of concurrent runs never mix)::

    start JOB RUN NODE PID PID_START GPUS TIME
    beat RUN PID TIME                  every BEAT_SECONDS while it runs
    term RUN PID TIME                  SIGTERM received and ignored (MODE stubborn)
    end RUN PID TIME HOW               HOW: ok | fail | sigterm

``NODE`` is read from the working directory the process runtime gives a run
(``<data_dir>/runs/<run_id>/work``; the harness names data dirs after nodes),
``GPUS`` is ``CUDA_VISIBLE_DEVICES`` (``-`` when empty) and ``PID_START`` the
start time in ``/proc/PID/stat``, so a checker never mistakes a reused pid for
the run. TIME is Unix seconds. A process killed with SIGKILL writes no ``end``:
its last ``beat`` says until when it surely ran.

MODE: ``ok`` exits 0 after SECONDS, ``fail`` exits 3, ``stubborn`` ignores
SIGTERM (a job that needs its whole grace) and exits 0. Standard library only.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

BEAT_SECONDS = 0.25


def _start_ticks(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        data = handle.read()
    return data[data.rfind(b")") + 1 :].split()[19].decode()


def main(argv: list[str]) -> int:
    results, seconds, mode = Path(argv[1]), float(argv[2]), argv[3]
    job_id = os.environ.get("MURMUR_JOB_ID", "?")
    run_id = os.environ.get("MURMUR_RUN_ID", "?")
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "") or "-"
    # The run's scratch dir, <data dir>/work/<run id>: the data dir is named after the node.
    cwd = Path.cwd()
    node = cwd.parents[1].name if len(cwd.parents) > 1 else "?"
    pid = os.getpid()
    fd = os.open(results / f"{job_id}.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(line: str) -> None:
        os.write(fd, f"{line} {time.time():.6f}".encode() + b"\n")

    def ended(how: str, code: int) -> None:
        os.write(fd, f"end {run_id} {pid} {time.time():.6f} {how}\n".encode())
        os._exit(code)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if mode == "stubborn":
            record(f"term {run_id} {pid}")
            return
        ended("sigterm", 128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
    record(f"start {job_id} {run_id} {node} {pid} {_start_ticks(pid)} {gpus}")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(BEAT_SECONDS, left))
        record(f"beat {run_id} {pid}")
    if mode == "fail":
        ended("fail", 3)
    ended("ok", 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
