"""What a run's container is made of: the engine options the docker runtime creates it
with, from the run's :class:`~murmur.node.agent.runtimes.base.LaunchSpec`.

Containers run under ``docker-init`` (``init=True``): the job is not PID 1, so it
gets SIGTERM on stop like any process (PID 1 ignores it by default), and its
zombies are reaped. They are never auto-removed, so an exit code survives a daemon
that was down when the container ended.

They run as the job owner's uid and groups (:mod:`murmur.node.agent.runtimes.accounts`),
with every capability dropped, ``no-new-privileges``, never privileged, and no
mounts but the run's datasets, read-only. The network is the node's setting
(``job_network_mode``), which an admin sets; a user cannot ask for the host's.
On a bridge network, rank 0 of a gang publishes its rendezvous port on the host, so
the other ranks meet it there; the collective traffic between ranks (NCCL) opens
ports of its own, which only the host's network (``job_network_mode = "host"``)
lets through.
"""

from __future__ import annotations

from typing import Any

from murmur.node.agent.runtimes.base import LaunchSpec, gang_environment, port_environment
from murmur.node.agent.runtimes.docker_labels import (
    LABEL_JOB,
    LABEL_NODE,
    LABEL_RUN,
    container_name,
)
from murmur.node.agent.runtimes.process import dataset_variable
from murmur.node.agent.runtimes.stop_notice import CONTAINER_NOTICE_DIR, NOTICE_FILE

DATASETS_DIR = "/datasets"

CONTAINER_LOG_CONFIG = {"type": "json-file", "config": {"max-size": "64m", "max-file": "3"}}
"""The engine's own copy of the output, which the pump reads: capped like ours.
(Not the ``local`` driver: in Docker 20.10 it drops the newline that ends a line
longer than 16 KiB, so that line and the next would become one.)"""


def container_command(spec: LaunchSpec) -> list[str]:
    """The container's command: ``argv``, or ``/bin/sh -c`` over it when the user asked for
    a shell (joined by spaces, as the process runtime does)."""
    if spec.shell:
        return ["/bin/sh", "-c", " ".join(spec.argv)]
    return list(spec.argv)


def container_environment(spec: LaunchSpec, *, real_gpus: bool) -> dict[str, str]:
    """The environment of a run's container.

    The user's variables, then Murmur's own, which the user cannot override:
    ``MURMUR_JOB_ID``, ``MURMUR_RUN_ID``, ``MURMUR_STOP_GRACE_SECONDS`` (between
    SIGTERM and SIGKILL when the run is stopped), ``MURMUR_PREEMPT_DEADLINE`` (the
    stop notice, its directory mounted read-only), a gang's torchrun variables
    (``gang_environment``), ``CUDA_VISIBLE_DEVICES``,
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and ``MURMUR_DATASET_<NAME>=/datasets/<name>``.
    ``PYTHONUNBUFFERED=1`` comes first (output reaches the log as it is printed;
    the user may turn it off).

    ``CUDA_VISIBLE_DEVICES``: with real GPUs the engine passes only the run's GPUs
    into the container, where CUDA numbers them from 0, so it is ``0,1,...``; with
    simulated GPUs nothing is passed and it is the node-local indices, exactly as
    the process runtime sets it. Empty without GPUs, so a CPU job cannot take one.
    """
    env = {"PYTHONUNBUFFERED": "1", **spec.env}
    env["MURMUR_JOB_ID"] = spec.job_id
    env["MURMUR_RUN_ID"] = spec.run_id
    env["MURMUR_STOP_GRACE_SECONDS"] = f"{spec.stop_grace_seconds:g}"
    env.update(gang_environment(spec.gang))
    if spec.stop_notice_dir is not None:
        env["MURMUR_PREEMPT_DEADLINE"] = f"{CONTAINER_NOTICE_DIR}/{NOTICE_FILE}"
    env.update(port_environment(spec))
    visible = range(len(spec.gpu_indices)) if real_gpus else spec.gpu_indices
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(index) for index in visible)
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    for dataset in spec.datasets:
        env[dataset_variable(dataset.name)] = f"{DATASETS_DIR}/{dataset.name}"
    return env


def container_options(
    spec: LaunchSpec, *, node_name: str, network_mode: str, real_gpus: bool
) -> dict[str, Any]:
    """The keyword arguments of the SDK's ``containers.create`` for a run (loads the SDK).

    Args:
        spec: the run.
        node_name: the node's name, for the ``murmur.node`` label.
        network_mode: the node's network mode, used when ``spec.network_mode`` is the
            default ``"bridge"``.
        real_gpus: pass the run's GPUs into the container (NVIDIA device requests).
    """
    import docker.types

    labels = {
        **spec.labels,
        LABEL_NODE: node_name,
        LABEL_RUN: spec.run_id,
        LABEL_JOB: spec.job_id,
    }
    mounts = [
        docker.types.Mount(
            target=f"{DATASETS_DIR}/{dataset.name}",
            source=str(dataset.host_path),
            type="bind",
            read_only=True,
        )
        for dataset in spec.datasets
    ]
    if spec.stop_notice_dir is not None:
        mounts.append(
            docker.types.Mount(
                target=CONTAINER_NOTICE_DIR,
                source=str(spec.stop_notice_dir),
                type="bind",
                read_only=True,
            )
        )
    mode = network_mode if spec.network_mode == "bridge" else spec.network_mode
    options: dict[str, Any] = {
        "name": container_name(spec.run_id),
        "command": container_command(spec),
        "environment": container_environment(spec, real_gpus=real_gpus),
        "labels": labels,
        "working_dir": spec.workdir,
        "network_mode": mode,
        "mounts": mounts,
        "init": True,
        "log_config": CONTAINER_LOG_CONFIG,
        # A job needs none of root's powers: no capabilities, no setuid way back
        # to them, never privileged.
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "privileged": False,
    }
    if spec.account is not None:
        # The owner's uid and groups, not the image's user (often root): what the
        # job may read of its mounted datasets is what its owner may read.
        options["user"] = f"{spec.account.uid}:{spec.account.gid}"
        options["group_add"] = [str(g) for g in spec.account.groups if g != spec.account.gid]
    if spec.cpus is not None:
        options["nano_cpus"] = round(spec.cpus * 1e9)
    if spec.memory_bytes is not None:
        options["mem_limit"] = spec.memory_bytes
    if real_gpus and spec.gpu_indices:
        options["device_requests"] = [
            docker.types.DeviceRequest(
                driver="nvidia",
                device_ids=[str(index) for index in spec.gpu_indices],
                capabilities=[["gpu"]],
            )
        ]
    published = [spec.port] if spec.port is not None else []
    gang = spec.gang
    if gang is not None and gang.node_rank == 0:
        # The other ranks meet rank 0 at its node's address: publish the port there.
        published.append(gang.master_port)
    if published and mode not in ("host", "none"):
        # A service replica's port too: the routers of every node reach it there.
        options["ports"] = {f"{port}/tcp": port for port in published}
    return options
