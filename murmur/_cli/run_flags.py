"""The flags that say how and where a run goes — runtime, image or environment,
resources, queue, environment variables, the command — shared by ``job submit`` and
``service create`` (a service's replicas are jobs)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from murmur._cli.errors import CommandError
from murmur._cli.parsing import non_negative_float, non_negative_int, parse_key_value, parse_size

if TYPE_CHECKING:
    from murmur.v1 import types_pb2

RUNTIMES = ("docker", "process")
"""The words of ``--runtime``: JobRuntime's names, lower case and written out, so that
parsing the command line needs no protobuf (a test holds them to the proto)."""


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """``--image``, ``--runtime``, ``--venv``, ``--conda-env``, ``--gpus``,
    ``--gpu-model``, ``--cpus``, ``--memory``, ``--dataset``, ``--queue``,
    ``--priority``, ``--env``, ``--workdir``, ``--shell``, ``--project``."""
    parser.add_argument("--image", default="", help="docker image (docker runtime)")
    parser.add_argument("--runtime", choices=RUNTIMES, help="default: docker with --image")
    parser.add_argument("--venv", default="", help="process runtime: a virtualenv path")
    parser.add_argument("--conda-env", default="", help="process runtime: a conda env path")
    parser.add_argument("--gpus", type=non_negative_int, default=0)
    parser.add_argument("--gpu-model", default="", help="e.g. A100 (substring of the model)")
    parser.add_argument("--cpus", type=non_negative_float, default=0.0)
    parser.add_argument("--memory", type=parse_size, default=0, help="e.g. 16GiB")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME")
    parser.add_argument("--queue", default="")
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--env", action="append", type=parse_key_value, default=[], metavar="K=V")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--shell", action="store_true", help="run CMD through /bin/sh -c")
    parser.add_argument(
        "--project",
        help="the project it belongs to (default: $MURMUR_PROJECT, else the lab policy's)",
    )


def project_of(args: argparse.Namespace) -> str:
    """``--project``, else ``$MURMUR_PROJECT`` (a job submitted from a job of a
    project has it), else none (the lab policy's default applies)."""
    import os

    project: str | None = args.project
    return project if project is not None else os.environ.get("MURMUR_PROJECT", "")


def run_spec(args: argparse.Namespace, *, example: str) -> types_pb2.JobSpec:
    """The job spec ``add_run_flags``'s flags and ``args.command`` describe (``--``
    first or not; through the shell, one string).

    Raises:
        CommandError: no command (``example`` shows how to give one).
    """
    from murmur.v1 import types_pb2

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise CommandError(f"no command: put it after `--`, e.g. {example}")
    runtime = (
        types_pb2.JobRuntime.Value(f"JOB_RUNTIME_{args.runtime.upper()}")
        if args.runtime
        else types_pb2.JOB_RUNTIME_UNSPECIFIED
    )
    return types_pb2.JobSpec(
        queue=args.queue,
        priority=args.priority,
        runtime=runtime,
        image=args.image,
        venv=args.venv,
        conda_env=args.conda_env,
        command=[" ".join(command)] if args.shell else command,
        shell=args.shell,
        env=dict(args.env),
        workdir=args.workdir,
        gpus=types_pb2.GpuRequest(count=args.gpus, model=args.gpu_model),
        cpus=args.cpus,
        memory_bytes=args.memory,
        datasets=args.dataset,
        project=project_of(args),
    )
