"""Projects: what the lab policy adds to a job of a project when it enters the queue.

A job names its project (``--project``, else ``MURMUR_PROJECT``, else the policy's
``[defaults] project``); usage is counted per project as well as per user. When the
policy names an MLflow tracking URI for the project (``[projects.NAME]``), the job's
environment gets ``MLFLOW_TRACKING_URI`` and ``MLFLOW_EXPERIMENT_NAME`` (the
project's experiment, else its name), unless the job sets them itself: MLflow's
client reads both, so a training script logs to the lab's server unchanged.

Applied by the control state as it applies the submission (the policy of that
moment, on every voter alike), like the policy's default time limit: what the job
got is in its spec, and shown with it.
"""

from __future__ import annotations

from murmur.scheduler.lab_policy import LabPolicy
from murmur.v1 import types_pb2

MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
MLFLOW_EXPERIMENT_NAME = "MLFLOW_EXPERIMENT_NAME"


def with_project_defaults(spec: types_pb2.JobSpec, policy: LabPolicy) -> types_pb2.JobSpec:
    """``spec`` with the policy's default project and its project's MLflow settings;
    ``spec`` itself (not a copy) when there is nothing to add, so the jobs of an
    array keep sharing one spec."""
    project = spec.project or policy.default_project
    settings = policy.projects.get(project) if project else None
    env: dict[str, str] = {}
    if settings is not None and settings.mlflow_tracking_uri:
        if MLFLOW_TRACKING_URI not in spec.env and MLFLOW_TRACKING_URI not in spec.secrets:
            env[MLFLOW_TRACKING_URI] = settings.mlflow_tracking_uri
        if MLFLOW_EXPERIMENT_NAME not in spec.env and MLFLOW_EXPERIMENT_NAME not in spec.secrets:
            env[MLFLOW_EXPERIMENT_NAME] = settings.mlflow_experiment or project
    if project == spec.project and not env:
        return spec
    completed = types_pb2.JobSpec()
    completed.CopyFrom(spec)
    completed.project = project
    completed.env.update(env)
    return completed
