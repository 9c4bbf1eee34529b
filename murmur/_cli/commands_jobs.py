"""``murmur job ...`` and ``murmur dataset ...``: run work, follow it, register data."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from murmur._cli.connect import add_connection_flags, add_json_flag, run_with_client
from murmur._cli.errors import CommandError
from murmur._cli.job_arrays import (
    add_array_flags,
    apply_array_flags,
    is_array,
    is_task,
    job_id_argument,
    read_batch,
    tasks_summary,
)
from murmur._cli.job_wait import (
    EXIT_TIMED_OUT,
    WaitTimedOut,
    describe_end,
    outcome,
    wait_within,
)
from murmur._cli.output import human_bytes, note, print_json, print_record, print_table
from murmur._cli.parsing import (
    non_negative_int,
    parse_duration,
    parse_key_value,
    positive_int,
)
from murmur._cli.run_flags import add_run_flags, project_of, run_spec
from murmur._cli.scan_progress import ScanProgressLine

if TYPE_CHECKING:
    from murmur import AsyncClient
    from murmur.v1 import types_pb2

JOB_ID_HELP = "a job id; an array's task is ID[INDEX] (quoted in a shell) or ID_INDEX"

JOB_STATES = (
    "pending", "scheduled", "starting", "running", "succeeded", "failed", "cancelled", "lost",
)  # fmt: skip
"""The words of ``--state``: JobState's names, likewise."""
REDACTED = "<redacted>"
"""How a node shows env values to a caller who may not see them (REDACTED in
node/api/services/job_visibility.py)."""


def _add_wait_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="then wait for the job to end, and exit with its exit code",
    )
    parser.add_argument(
        "--wait-timeout",
        type=parse_duration,
        metavar="DURATION",
        help=f"give up waiting after this long (e.g. 2h; exit code {EXIT_TIMED_OUT}); "
        "implies --wait",
    )


def register(commands: Any) -> None:
    job = commands.add_parser("job", help="submit, list, inspect, follow and cancel jobs")
    actions = job.add_subparsers(dest="job_command", metavar="ACTION")
    actions.required = True

    submit = actions.add_parser(
        "submit",
        help="submit a job; prints its id",
        description="Prints the job's id on stdout (with --json its record instead). "
        "With --wait, waits for the job to end and exits with its exit code.",
    )
    submit.add_argument("--name", default="")
    add_run_flags(submit)
    submit.add_argument("--gpu-share", action="store_true", help="may share GPUs with others")
    submit.add_argument("--time-limit", type=parse_duration, help="e.g. 2h")
    submit.add_argument("--retries", type=non_negative_int, default=0)
    submit.add_argument(
        "--no-requeue",
        action="store_true",
        help="a run lost with its node spends a retry (default: the job is queued again "
        "without spending one)",
    )
    submit.add_argument("--nodes", type=positive_int, default=1)
    submit.add_argument(
        "--secret",
        action="append",
        type=_secret_pair,
        default=[],
        metavar="NAME=VALUE",
        help="an env variable whose value no one is shown, you neither (repeatable)",
    )
    submit.add_argument(
        "--secret-file",
        action="append",
        type=_secret_pair,
        default=[],
        metavar="NAME=PATH",
        help="a secret read from a local file, less its trailing newline (repeatable)",
    )
    submit.add_argument("--label", action="append", type=parse_key_value, default=[], metavar="K=V")
    add_array_flags(submit)
    submit.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD...")
    _add_wait_flags(submit)
    add_connection_flags(submit)
    add_json_flag(submit)
    submit.set_defaults(handler=submit_command)

    listing = actions.add_parser("list", help="jobs: queue and history, newest first")
    listing.add_argument("--state", action="append", choices=JOB_STATES, default=[])
    listing.add_argument("--user", default="")
    listing.add_argument("--queue", default="")
    listing.add_argument(
        "--limit", type=positive_int, default=1000, help="the newest N jobs (default 1000)"
    )
    listing.add_argument(
        "--oldest-first",
        action="store_true",
        help="the oldest jobs first (and --limit N: the oldest N)",
    )
    listing.add_argument(
        "--all",
        action="store_true",
        dest="include_archived",
        help="also jobs that ended longer ago than the cluster's job retention (archived)",
    )
    listing.add_argument(
        "--label",
        action="append",
        type=parse_key_value,
        default=[],
        metavar="K=V",
        help="only jobs with this label (repeatable; a sweep's tasks have its values)",
    )
    listing.add_argument("--project", default="", help="only jobs of this project")
    listing.add_argument(
        "--tasks",
        action="store_true",
        help="each task of an array on its own line (default: an array whose every task "
        "is listed is one line)",
    )
    add_connection_flags(listing)
    add_json_flag(listing)
    listing.set_defaults(handler=list_command)

    show = actions.add_parser("show", help="one job: spec, state, reason, runs, events")
    show.add_argument("id", type=job_id_argument, help=JOB_ID_HELP)
    add_connection_flags(show)
    add_json_flag(show)
    show.set_defaults(handler=show_command)

    logs = actions.add_parser("logs", help="a job's output (latest run unless --run)")
    logs.add_argument("id", type=job_id_argument, help=JOB_ID_HELP)
    logs.add_argument("-f", "--follow", action="store_true", help="stream until the run ends")
    logs.add_argument("-t", "--timestamps", action="store_true")
    logs.add_argument("--tail", type=positive_int, help="only the last N lines")
    logs.add_argument("--run", default="", help="a run id (see `job show`)")
    add_connection_flags(logs)
    logs.set_defaults(handler=logs_command)

    cancel = actions.add_parser("cancel", help="cancel a pending or running job")
    cancel.add_argument("id", type=job_id_argument, help=JOB_ID_HELP)
    cancel.add_argument("--reason", default="")
    add_connection_flags(cancel)
    add_json_flag(cancel)
    cancel.set_defaults(handler=cancel_command)

    wait = actions.add_parser(
        "wait",
        help="wait for jobs to end; exit with the job's exit code",
        description="Waits until the jobs end and exits with the exit code of the job "
        "(0 when it succeeded; its run's exit code, or 1, when it did not). With several "
        "jobs (--all, the default): 0 if all succeeded, else the code of the first, in "
        "the order given, that did not. --any returns when the first ends, with its "
        "code. An array ends when all its tasks have: 0 if all succeeded, else the exit "
        f"code of its first task, by index, that did not. A wait that runs out of --timeout "
        f"exits {EXIT_TIMED_OUT}.",
    )
    wait.add_argument("ids", nargs="+", metavar="ID", type=job_id_argument, help=JOB_ID_HELP)
    either = wait.add_mutually_exclusive_group()
    either.add_argument(
        "--all",
        action="store_false",
        dest="any",
        default=False,
        help="wait for every job (the default)",
    )
    either.add_argument("--any", action="store_true", help="return when the first job ends")
    wait.add_argument(
        "--timeout",
        type=parse_duration,
        metavar="DURATION",
        help=f"give up after this long (e.g. 90s, 2h) with exit code {EXIT_TIMED_OUT}",
    )
    add_connection_flags(wait)
    add_json_flag(wait)
    wait.set_defaults(handler=wait_command)

    resubmit = actions.add_parser(
        "resubmit",
        help="submit a job's spec again as a new job; prints the new id",
        description="Submits the spec of job ID, as the cluster returns it, as a new "
        "job of yours. A job with secrets cannot be: their values are never returned.",
    )
    resubmit.add_argument("id", type=job_id_argument, help=JOB_ID_HELP)
    _add_wait_flags(resubmit)
    add_connection_flags(resubmit)
    add_json_flag(resubmit)
    resubmit.set_defaults(handler=resubmit_command)

    dataset = commands.add_parser("dataset", help="datasets on the nodes' disks")
    dataset_actions = dataset.add_subparsers(dest="dataset_command", metavar="ACTION")
    dataset_actions.required = True
    add = dataset_actions.add_parser("add", help="register a directory on the node as a dataset")
    add.add_argument("path")
    add.add_argument("--name", required=True)
    add_connection_flags(add)
    add_json_flag(add)
    add.set_defaults(handler=dataset_add_command)
    dataset_list = dataset_actions.add_parser("list", help="every dataset and where it lives")
    add_connection_flags(dataset_list)
    add_json_flag(dataset_list)
    dataset_list.set_defaults(handler=dataset_list_command)
    dataset_show = dataset_actions.add_parser("show", help="one dataset")
    dataset_show.add_argument("name")
    add_connection_flags(dataset_show)
    add_json_flag(dataset_show)
    dataset_show.set_defaults(handler=dataset_show_command)
    dataset_remove = dataset_actions.add_parser(
        "remove",
        help="unregister a dataset from a node (its files stay on disk)",
        description="Unregisters a dataset from the node that holds it: jobs can no "
        "longer mount it there and the node stops advertising it. Its files are NOT "
        "deleted. Refused while a running job on that node mounts it. The user who "
        "added it, or an admin.",
    )
    dataset_remove.add_argument("name")
    dataset_remove.add_argument(
        "--from",
        dest="from_node",
        default="",
        metavar="NODE",
        help="the node (by name) to remove it from; needed when several hold it "
        "(--node is the address the CLI connects to)",
    )
    add_connection_flags(dataset_remove)
    add_json_flag(dataset_remove)
    dataset_remove.set_defaults(handler=dataset_remove_command)


def _secret_pair(text: str) -> tuple[str, str]:
    """``NAME=VALUE``; unlike ``parse_key_value`` the error does not echo the text."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME=VALUE (NAME=PATH for --secret-file)")
    return name, value


def _read_secret_file(name: str, path: str) -> str:
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise CommandError(f"secret {name}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"secret {name}: {path} is not UTF-8 text") from None
    for newline in ("\r\n", "\n"):
        if text.endswith(newline):
            return text[: -len(newline)]
    return text


def secrets_of(args: argparse.Namespace) -> dict[str, str]:
    """``--secret`` and ``--secret-file`` together, each name once."""
    pairs = [*args.secret, *((n, _read_secret_file(n, p)) for n, p in args.secret_file)]
    secrets: dict[str, str] = {}
    for name, value in pairs:
        if name in secrets:
            raise CommandError(f"secret {name} is given twice")
        secrets[name] = value
    return secrets


def build_spec(args: argparse.Namespace) -> types_pb2.JobSpec:
    from google.protobuf.duration_pb2 import Duration

    spec = run_spec(args, example="murmur job submit -- python train.py")
    spec.name = args.name
    spec.secrets.update(secrets_of(args))
    spec.gpus.share = args.gpu_share
    spec.retries = args.retries
    spec.no_requeue = args.no_requeue
    spec.nodes = args.nodes
    spec.labels.update(dict(args.label))
    if args.time_limit is not None:
        spec.time_limit.CopyFrom(Duration(seconds=int(args.time_limit.total_seconds())))
    apply_array_flags(spec, args)
    return spec


def submit_command(args: argparse.Namespace) -> int:
    if args.from_file is not None:
        return _submit_batch(args)
    spec = build_spec(args)

    async def given(client: AsyncClient) -> types_pb2.JobSpec:
        return spec

    return _submit(args, given)


def _submit(
    args: argparse.Namespace,
    spec_of: Callable[[AsyncClient], Awaitable[types_pb2.JobSpec]],
    *,
    what: str = "submitted",
) -> int:
    """Submits the spec ``spec_of(client)`` gives; prints the id (with --json, the
    record); with --wait, waits for the job and returns its exit code.

    One idempotency key serves every attempt of the submission, so the client may
    repeat it on another node when the first went away: the cluster keeps one job
    per key.
    """
    wait = args.wait or args.wait_timeout is not None

    async def session(client: AsyncClient) -> int:
        job = await client.submit_job(await spec_of(client))
        if not wait:
            print_record(job, as_json=args.json, text=lambda: print(job.id))
        elif not args.json:
            print(job.id, flush=True)  # before the wait, so a script has it at once
        note(f"{what} {job.id}: {_state(job.state)}, {job.reason}")
        if not wait:
            return 0
        jobs, ended = await wait_within(
            client, [job.id], args.wait_timeout, on_end=lambda job: note(describe_end(job))
        )
        if args.json:
            print_json(jobs[0])
        return outcome(jobs, ended, first=False)

    return _run_waiting(args, session)


def _submit_batch(args: argparse.Namespace) -> int:
    """``job submit --from FILE``: every job of the file in one call, all or none;
    prints their ids, one a line (an array's id for an array)."""
    if [word for word in args.command if word != "--"]:
        raise CommandError("--from FILE takes the jobs from the file: give no command")
    if args.array is not None or args.sweep or args.after:
        raise CommandError("with --from, give arrays, sweeps and dependencies in the file's specs")
    batch = read_batch(args.from_file, project=project_of(args))
    wait = args.wait or args.wait_timeout is not None

    async def session(client: AsyncClient) -> int:
        from murmur import MurmurError
        from murmur.v1 import cluster_pb2

        try:
            jobs = await client.submit_jobs(
                [request.spec for request in batch.requests],
                idempotency_keys=[request.idempotency_key for request in batch.requests],
            )
        except MurmurError as exc:
            raise CommandError(batch.located(exc.message)) from None
        if not args.json or not wait:
            print_record(
                cluster_pb2.SubmitJobsResponse(jobs=jobs),
                as_json=args.json,
                text=lambda: print("\n".join(job.id for job in jobs), flush=True),
            )
        note(f"submitted {len(jobs)} jobs from {batch.name}")
        if not wait:
            return 0
        ended_jobs, ended = await wait_within(
            client, [job.id for job in jobs], args.wait_timeout,
            on_end=lambda job: note(describe_end(job)),
        )  # fmt: skip
        if args.json:
            print_json(cluster_pb2.ListJobsResponse(jobs=ended_jobs))
        return outcome(ended_jobs, ended, first=False)

    return _run_waiting(args, session)


def _run_waiting(args: argparse.Namespace, session: Callable[[AsyncClient], Awaitable[int]]) -> int:
    """Runs a session that waits for jobs; a wait that ran out of time is one line on
    stderr and exit code `EXIT_TIMED_OUT`."""
    try:
        return run_with_client(args, session)
    except WaitTimedOut as exc:
        print(f"murmur: error: {exc}", file=sys.stderr)
        return EXIT_TIMED_OUT


def wait_command(args: argparse.Namespace) -> int:
    from murmur.v1 import cluster_pb2

    async def session(client: AsyncClient) -> int:
        jobs, ended = await wait_within(
            client,
            args.ids,
            args.timeout,
            first=args.any,
            on_end=lambda job: note(describe_end(job)),
        )
        if args.json:
            print_json(cluster_pb2.ListJobsResponse(jobs=jobs))
        return outcome(jobs, ended, first=args.any)

    return _run_waiting(args, session)


def resubmit_command(args: argparse.Namespace) -> int:
    async def spec_of(client: AsyncClient) -> types_pb2.JobSpec:
        from murmur.v1 import types_pb2

        return resubmittable_spec(await client.get_job(args.id), types_pb2.JobSpec())

    return _submit(args, spec_of, what=f"resubmitted {args.id} as")


def resubmittable_spec(job: types_pb2.Job, spec: types_pb2.JobSpec) -> types_pb2.JobSpec:
    """``job``'s spec, copied into ``spec``, to submit again.

    Raises:
        CommandError: The spec as returned is not the spec submitted: the job has
            secrets (values never returned) or env values hidden from the caller;
            or the job is one task of an array.
    """
    if is_task(job):
        raise CommandError(
            f"job {job.id} is a task of array {job.array.array_id}: resubmit the array "
            f"({job.array.array_id}), or submit the task's command again"
        )
    if job.spec.secret_names:
        names = ", ".join(sorted(job.spec.secret_names))
        raise CommandError(
            f"job {job.id} has secrets ({names}), whose values are never returned: it "
            "cannot be resubmitted as it is; submit it again with --secret or --secret-file"
        )
    hidden = sorted(name for name, value in job.spec.env.items() if value == REDACTED)
    if hidden and len(hidden) == len(job.spec.env):
        raise CommandError(
            f"job {job.id} belongs to {job.user}, whose env values ({', '.join(hidden)}) "
            "are hidden from you: only they or an admin can resubmit it"
        )
    spec.CopyFrom(job.spec)
    del spec.secret_names[:]  # output only
    return spec


def _state(state: int) -> str:
    from murmur.v1 import types_pb2

    return types_pb2.JobState.Name(state).removeprefix("JOB_STATE_").lower()  # type: ignore[arg-type]


def _age(job: types_pb2.Job) -> str:
    seconds = (datetime.now(UTC) - job.submitted_at.ToDatetime(tzinfo=UTC)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(0, seconds):.0f}s"


def _where(job: types_pb2.Job) -> str:
    """Where the latest run is (or was): its node and GPUs, or a gang's nodes."""
    if not job.runs:
        return "-"
    run = job.runs[-1]
    ranks = [other for other in job.runs if other.id == run.id]
    if len(ranks) > 1:
        return ",".join(rank.node for rank in sorted(ranks, key=lambda r: r.node_rank))
    gpus = ",".join(str(i) for i in run.gpu_indices)
    return f"{run.node}" + (f" gpu {gpus}" if gpus else "")


def list_command(args: argparse.Namespace) -> int:
    from murmur.v1 import cluster_pb2, types_pb2

    states = [types_pb2.JobState.Value(f"JOB_STATE_{state.upper()}") for state in args.state]
    jobs = run_with_client(
        args,
        lambda client: client.list_jobs(
            states=states,
            user=args.user,
            queue=args.queue,
            limit=args.limit,
            include_archived=args.include_archived,
            newest_first=not args.oldest_first,
            labels=dict(args.label),
            project=args.project,
            tasks=args.tasks,
        ),
    )
    print_record(
        cluster_pb2.ListJobsResponse(jobs=jobs), as_json=args.json, text=lambda: _job_table(jobs)
    )
    return 0


def _job_table(jobs: list[types_pb2.Job]) -> None:
    rows = [
        [
            job.id,
            job.spec.name or "-",
            job.user,
            _state(job.state),
            str(job.spec.gpus.count),
            f"{job.array.tasks} tasks" if is_array(job) else _where(job),
            _age(job),
            tasks_summary(job) if is_array(job) else job.reason,
        ]
        for job in jobs
    ]
    print_table(("ID", "NAME", "USER", "STATE", "GPUS", "WHERE", "AGE", "REASON"), rows)


def show_command(args: argparse.Namespace) -> int:
    job = run_with_client(args, lambda client: client.get_job(args.id))
    print_record(job, as_json=args.json, text=lambda: _print_job(job))
    return 0


def _print_job(job: types_pb2.Job) -> None:
    from murmur.v1 import types_pb2

    spec = job.spec
    print(f"job {job.id} {spec.name}".rstrip())
    print(f"state: {_state(job.state)} ({job.reason})")
    if job.archived:
        print("archived: ended longer ago than the cluster's job retention")
    if job.queue_position:
        print(f"position {job.queue_position} in queue {spec.queue}")
    print(f"user: {job.user}   queue: {spec.queue}   priority: {spec.priority}")
    _print_array_parts(job)
    runtime = types_pb2.JobRuntime.Name(spec.runtime).removeprefix("JOB_RUNTIME_").lower()
    target = spec.image or spec.venv or spec.conda_env
    print(f"runtime: {runtime}" + (f" ({target})" if target else ""))
    print(f"command: {list(spec.command)}")
    gpus = f"{spec.gpus.count}" + (f" {spec.gpus.model}" if spec.gpus.model else "")
    memory = human_bytes(spec.memory_bytes) if spec.memory_bytes else "-"
    print(f"gpus: {gpus}   cpus: {spec.cpus or '-'}   memory: {memory}")
    if spec.datasets:
        print(f"datasets: {', '.join(spec.datasets)}")
    if spec.env:
        print("env: " + " ".join(f"{key}={spec.env[key]}" for key in sorted(spec.env)))
    if spec.secret_names:
        print(f"secrets: {', '.join(spec.secret_names)} (values never shown)")
    if spec.no_requeue:
        print("no requeue: a run lost with its node spends a retry")
    if job.HasField("exit_code"):
        print(f"exit code: {job.exit_code}")
    for run in job.runs:
        exit_code = run.exit_code if run.HasField("exit_code") else "-"
        gpu_list = ",".join(str(i) for i in run.gpu_indices) or "-"
        rank = f" rank {run.node_rank}" if spec.nodes > 1 else ""
        print(
            f"run {run.id}{rank}: {_state(run.state)} on {run.node} gpus {gpu_list} "
            f"exit {exit_code}: {run.reason}"
        )
    if job.history:
        print("events:")
        rows = [
            [
                f"  {event.time.ToDatetime(tzinfo=UTC):%Y-%m-%d %H:%M:%S}",
                _state(event.job_state) if event.job_state else "-",
                event.message,
            ]
            for event in job.history
        ]
        print_table(("  TIME (UTC)", "STATE", "WHAT"), rows)


def _print_array_parts(job: types_pb2.Job) -> None:
    """What ``job show`` says of a job's project, array and dependencies."""
    from murmur.v1 import types_pb2

    spec = job.spec
    if spec.project:
        print(f"project: {spec.project}")
    if is_array(job):
        limit = f", at most {spec.array.max_running} at once" if spec.array.max_running else ""
        what = f"indices {spec.array.indices}" if spec.array.indices else "a sweep"
        print(f"array: {job.array.tasks} tasks ({what}{limit}): {tasks_summary(job)}")
        print(f"tasks: {job.id}[INDEX] (`murmur job list --tasks` lists them)")
    elif is_task(job):
        array = job.array
        print(f"task {array.task_index} of array {array.array_id} ({array.tasks} tasks)")
        sweep = [p.name for p in spec.array.sweep if p.name in spec.labels]
        values = [f"{name}={spec.labels[name]}" for name in sweep]
        if values:
            print(f"values: {' '.join(values)}")
    for parameter in spec.array.sweep:
        print(f"sweep {parameter.name}: {', '.join(parameter.values)}")
    for dependency in spec.after:
        word = types_pb2.DependencyCondition.Name(dependency.condition)
        condition = word.removeprefix("DEPENDENCY_CONDITION_").lower()
        print(f"after: {dependency.job_id}:{'ok' if condition == 'unspecified' else condition}")


def logs_command(args: argparse.Namespace) -> int:
    from murmur._cli.log_output import print_log_line

    async def stream(client: Any) -> None:
        async for line in client.stream_logs(
            args.id, run_id=args.run, follow=args.follow, tail_lines=args.tail or 0
        ):
            print_log_line(line, timestamps=args.timestamps, flush=args.follow)

    run_with_client(args, stream)
    return 0


def cancel_command(args: argparse.Namespace) -> int:
    job = run_with_client(args, lambda client: client.cancel_job(args.id, reason=args.reason))
    note(f"{job.id}: {_state(job.state)}, {job.reason}")
    if args.json:
        print_json(job)
    return 0


def _dataset_rows(datasets: list[types_pb2.Dataset]) -> list[list[str]]:
    return [
        [d.name, d.node, human_bytes(d.size_bytes), str(d.file_count), d.path] for d in datasets
    ]


_DATASET_HEADERS = ("NAME", "NODE", "SIZE", "FILES", "PATH")


def dataset_add_command(args: argparse.Namespace) -> int:
    # The scan of a large tree takes minutes: progress on stderr (none with --json),
    # and no deadline, which a stream of progress makes safe.
    progress = ScanProgressLine(f"scanning {args.name}")
    on_progress = (lambda _: None) if args.json else progress.update
    try:
        # Never through another node: the path is on this one's disk.
        dataset = run_with_client(
            args,
            lambda client: client.add_dataset(args.name, args.path, on_progress=on_progress),
            failover=False,
        )
    finally:
        progress.finish()
    print_record(
        dataset,
        as_json=args.json,
        text=lambda: print_table(_DATASET_HEADERS, _dataset_rows([dataset])),
    )
    return 0


def dataset_list_command(args: argparse.Namespace) -> int:
    from murmur.v1 import cluster_pb2

    datasets = run_with_client(args, lambda client: client.list_datasets())
    print_record(
        cluster_pb2.ListDatasetsResponse(datasets=datasets),
        as_json=args.json,
        text=lambda: print_table(_DATASET_HEADERS, _dataset_rows(datasets)),
    )
    return 0


def dataset_show_command(args: argparse.Namespace) -> int:
    dataset = run_with_client(args, lambda client: client.get_dataset(args.name))
    print_record(dataset, as_json=args.json, text=lambda: _print_dataset(dataset))
    return 0


def dataset_remove_command(args: argparse.Namespace) -> int:
    dataset = run_with_client(
        args, lambda client: client.remove_dataset(args.name, node=args.from_node)
    )
    if args.json:
        print_json(dataset)
    else:
        print(
            f"dataset {dataset.name} removed from {dataset.node}; "
            f"its files at {dataset.path} were left in place"
        )
    return 0


def _print_dataset(dataset: types_pb2.Dataset) -> None:
    print_table(_DATASET_HEADERS, _dataset_rows([dataset]))
    print(f"manifest sha256: {dataset.manifest_sha256}")
    added_at = dataset.added_at.ToDatetime(tzinfo=UTC)
    print(f"added by {dataset.added_by} at {added_at:%Y-%m-%d %H:%M} UTC")
