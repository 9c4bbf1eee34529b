"""Turning the submit form's fields into a JobSpec, with one message per mistake.

Pure, so the rules are tested without a screen; the node validates again, and its
refusal is shown as a notification like any other.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from murmur.v1 import types_pb2


class FormError(ValueError):
    """A field cannot be used; the message names it."""


@dataclass(frozen=True)
class JobForm:
    name: str = ""
    command: str = ""
    runtime: str = "process"
    image: str = ""
    gpus: str = "0"
    gpu_model: str = ""
    queue: str = ""
    priority: str = "0"


def spec_from_form(form: JobForm) -> types_pb2.JobSpec:
    """The JobSpec the form describes. Raises `FormError` naming the bad field."""
    try:
        command = shlex.split(form.command)
    except ValueError as exc:
        raise FormError(f"command: {exc}") from None
    if not command:
        raise FormError("command: say what to run, e.g. python train.py")
    runtimes = {"process": types_pb2.JOB_RUNTIME_PROCESS, "docker": types_pb2.JOB_RUNTIME_DOCKER}
    runtime = runtimes.get(form.runtime.strip().lower())
    if runtime is None:
        raise FormError("runtime: process or docker")
    if runtime == types_pb2.JOB_RUNTIME_DOCKER and not form.image.strip():
        raise FormError("image: the docker runtime needs an image")
    gpus = _whole_number("gpus", form.gpus, minimum=0)
    priority = _whole_number("priority", form.priority, minimum=-(2**31))
    return types_pb2.JobSpec(
        name=form.name.strip(),
        command=command,
        runtime=runtime,
        image=form.image.strip() if runtime == types_pb2.JOB_RUNTIME_DOCKER else "",
        gpus=types_pb2.GpuRequest(count=gpus, model=form.gpu_model.strip()),
        queue=form.queue.strip(),
        priority=priority,
    )


def _whole_number(field: str, text: str, *, minimum: int) -> int:
    try:
        value = int(text.strip() or "0")
    except ValueError:
        raise FormError(f"{field}: a whole number, not {text!r}") from None
    if value < minimum or value >= 2**31:
        raise FormError(f"{field}: {value} is out of range")
    return value
