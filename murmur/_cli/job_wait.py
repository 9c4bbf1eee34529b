"""Waiting for jobs to end (``job wait``, ``job submit --wait``), and the exit code
a script gets from them.

The wait follows the cluster's job stream (WatchJobs) rather than asking again and
again: a node that does not offer it is polled instead. A stream that breaks (the
leader changed, the node went away) is opened again, through another node when the
client knows one; a wait that hears from no node for ``OUTAGE_SECONDS`` gives up.

asyncio and the client are imported when a wait begins: ``job`` commands import this
module while the command line is parsed, which stays light.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from murmur._cli.output import note

if TYPE_CHECKING:
    from murmur import AsyncClient
    from murmur.v1 import types_pb2

EXIT_TIMED_OUT = 124
"""The exit code of a wait that ran out of time (as GNU ``timeout`` exits)."""

OUTAGE_SECONDS = 120.0
"""How long a wait keeps trying to reach the cluster before it gives up."""

_POLL_SECONDS = 1.0
"""Between two looks at a job when the node offers no job stream."""

_RECONNECT_SECONDS = 1.0
"""Between two attempts to open a broken job stream again."""


class WaitTimedOut(Exception):
    """The jobs did not end within the time given; the message says which."""


def is_ended(job: types_pb2.Job) -> bool:
    from murmur.v1 import types_pb2

    return job.state in (
        types_pb2.JOB_STATE_SUCCEEDED,
        types_pb2.JOB_STATE_FAILED,
        types_pb2.JOB_STATE_CANCELLED,
        types_pb2.JOB_STATE_LOST,
    )


def exit_code_of(job: types_pb2.Job) -> int:
    """What ``job wait`` exits with for an ended job: 0 when it succeeded, else its
    last run's exit code when that is one a process can exit with (1 to 255; a run
    killed by a signal has 128 + its number), else 1."""
    from murmur.v1 import types_pb2

    if job.state == types_pb2.JOB_STATE_SUCCEEDED:
        return 0
    if job.HasField("exit_code") and 1 <= job.exit_code <= 255:
        return job.exit_code
    return 1


def state_word(state: int) -> str:
    from murmur.v1 import types_pb2

    return types_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()  # type: ignore[arg-type]


def describe_end(job: types_pb2.Job) -> str:
    """``3f2a...: failed, exit code 7 (exited with code 7)``: one line for stderr."""
    text = f"{job.id}: {state_word(job.state)}"
    if job.HasField("exit_code"):
        text += f", exit code {job.exit_code}"
    return text + (f" ({job.reason})" if job.reason else "")


def outcome(jobs: Sequence[types_pb2.Job], ended_order: Sequence[str], *, first: bool) -> int:
    """The exit code of a wait: with ``first`` (``--any``), that of the job that ended
    first; else 0 when every job succeeded, or the code of the first job, in the
    order given, that did not."""
    if first:
        by_id = {job.id: job for job in jobs}
        return exit_code_of(by_id[ended_order[0]])
    for job in jobs:
        code = exit_code_of(job)
        if code:
            return code
    return 0


async def wait_for_jobs(
    client: AsyncClient,
    job_ids: Sequence[str],
    *,
    first: bool = False,
    on_end: Callable[[types_pb2.Job], object] = lambda job: None,
) -> tuple[list[types_pb2.Job], list[str]]:
    """Waits until every job has ended (with ``first``, until one has).

    Returns:
        Each job as last seen, in the order of ``job_ids`` (without repeats), and the
        ids of those that ended, in the order they were seen to end.

    Raises:
        MurmurError: A job does not exist (``NotFound``) or may not be read, or no
            node answered for ``OUTAGE_SECONDS``.
    """
    import asyncio

    from murmur import MurmurError

    ids = list(dict.fromkeys(job_ids))
    latest = {job_id: await client.get_job(job_id) for job_id in ids}
    ended: list[str] = []

    def seen(job: types_pb2.Job) -> bool:
        """Records ``job``; whether the wait is over."""
        if job.id not in latest or job.id in ended:
            return False
        latest[job.id] = job
        if is_ended(job):
            ended.append(job.id)
            on_end(job)
        return bool(ended) if first else len(ended) == len(ids)

    def result() -> tuple[list[types_pb2.Job], list[str]]:
        return [latest[job_id] for job_id in ids], ended

    over = False
    for job in list(latest.values()):
        over = seen(job) or over  # every job seen, so each ended one is reported
    if over:
        return result()
    # Learn the cluster's other nodes, to follow on through one if ours goes away.
    with contextlib.suppress(MurmurError):
        await client.list_nodes()
    waiting_users = {job.user for job in latest.values() if not is_ended(job)}
    user = waiting_users.pop() if len(waiting_users) == 1 else ""
    if await _follow_stream(client, user, seen, list(latest)):
        return result()
    while True:  # the node offers no job stream: look now and then
        for job_id in ids:
            if job_id not in ended and seen(await client.get_job(job_id)):
                return result()
        await asyncio.sleep(_POLL_SECONDS)


async def wait_within(
    client: AsyncClient,
    job_ids: Sequence[str],
    within: timedelta | None,
    *,
    first: bool = False,
    on_end: Callable[[types_pb2.Job], object] = lambda job: None,
) -> tuple[list[types_pb2.Job], list[str]]:
    """`wait_for_jobs`, for at most ``within`` (None: as long as it takes).

    Raises:
        WaitTimedOut: The time ran out; the message names the jobs still waited
            for and their states.
    """
    import asyncio

    from murmur import MurmurError

    seconds = within.total_seconds() if within is not None else None
    try:
        async with asyncio.timeout(seconds):
            return await wait_for_jobs(client, job_ids, first=first, on_end=on_end)
    except TimeoutError:
        pass
    waiting = []
    for job_id in dict.fromkeys(job_ids):
        try:
            job = await client.get_job(job_id, timeout=5)
        except MurmurError:
            waiting.append(job_id)
            continue
        if not is_ended(job):
            waiting.append(f"{job_id} ({state_word(job.state)})")
    names = ", ".join(waiting or dict.fromkeys(job_ids))
    raise WaitTimedOut(f"timed out after {_duration_text(seconds or 0)} waiting for job {names}")


async def _follow_stream(
    client: AsyncClient,
    user: str,
    seen: Callable[[types_pb2.Job], bool],
    job_ids: Sequence[str],
) -> bool:
    """Follows the job stream until ``seen`` says the wait is over (True), or the node
    does not offer the stream (False)."""
    import asyncio

    from murmur import DeadlineExceeded, Unavailable, Unimplemented

    broken_since: float | None = None
    while True:
        try:
            if broken_since is not None:
                # Back after a break: a job that ended meanwhile may be missing from
                # the stream's first answer (archived), never from its own.
                for job_id in job_ids:
                    if seen(await client.get_job(job_id)):
                        return True
            # An array comes as its own record (ended when every task has).
            jobs = client.watch_jobs(user=user, fold_arrays=True)
            try:
                async for job in jobs:
                    broken_since = None
                    if seen(job):
                        return True
            finally:
                aclose = getattr(jobs, "aclose", None)  # ends the stream on the node now
                if aclose is not None:
                    await aclose()
        except Unimplemented:
            return False
        except (Unavailable, DeadlineExceeded) as exc:
            if broken_since is None:
                note(f"murmur: lost the job stream ({exc}); following on")
            elif time.monotonic() - broken_since > OUTAGE_SECONDS:
                raise
        if broken_since is None:
            broken_since = time.monotonic()
        await asyncio.sleep(_RECONNECT_SECONDS)


def _duration_text(seconds: float) -> str:
    """``90s``, ``15m``, ``2h``, ``1.5h``: as a person would write it."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"
