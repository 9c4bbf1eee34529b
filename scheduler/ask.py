"""A job's request reduced to what placement compares, normalised once per job.

Two jobs with equal ``Ask`` values fit exactly the same nodes, so the planner uses
an ``Ask`` as the key of its "this shape did not fit" memo: within one plan, free
resources only shrink, so a shape that did not fit once will not fit later.
"""

from __future__ import annotations

from dataclasses import dataclass

from murmur.scheduler.policy import NO_DEFAULT_REQUEST, DatasetLocality, DefaultRequest
from murmur.scheduler.snapshot import JobRequest


@dataclass(frozen=True, slots=True)
class Ask:
    """Per-rank resources of a job, as placement sees them.

    Attributes:
        gpus: GPUs per rank.
        model: the model constraint as the user wrote it (for messages); "" for any.
        model_lower: ``model`` lower-cased, matched as a substring of GPU models.
        share: the job may share GPUs with other sharing jobs.
        cpus: CPUs per rank (the default request's when the job names none).
        memory_bytes: memory per rank (likewise).
        nodes: ranks, each on its own node.
        required_datasets: datasets a node must hold to host a rank; empty unless
            the policy requires locality.
    """

    gpus: int
    model: str
    model_lower: str
    share: bool
    cpus: float
    memory_bytes: int
    nodes: int
    required_datasets: frozenset[str]

    @classmethod
    def of(
        cls,
        job: JobRequest,
        dataset_locality: DatasetLocality,
        default_request: DefaultRequest = NO_DEFAULT_REQUEST,
    ) -> Ask:
        """The ask of ``job`` under ``dataset_locality``, counting a job that names no
        CPUs or no memory as ``default_request``'s.

        A CPU-only job (``gpus == 0``) drops its model and share flags: they
        constrain nothing.
        """
        model = job.gpu_model.strip() if job.gpus > 0 else ""
        required = (
            frozenset(job.datasets)
            if dataset_locality is DatasetLocality.REQUIRE
            else frozenset[str]()
        )
        return cls(
            gpus=job.gpus,
            model=model,
            model_lower=model.lower(),
            share=job.gpu_share and job.gpus > 0,
            cpus=default_request.cpus_of(job.cpus),
            memory_bytes=default_request.memory_of(job.memory_bytes),
            nodes=job.nodes,
            required_datasets=required,
        )
