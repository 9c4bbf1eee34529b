"""A job's secrets: environment variables for its run whose values no API shows.

``JobSpec.secrets`` travels with the job through the control log to the run's node,
where the secrets join the run's environment (node/agent/run_convert.py). Every
answer that carries a spec shows their names only, in ``secret_names``
(:func:`without_secret_values`), whoever asks; the control state drops the values
once a job has ended (it never runs again).
"""

from __future__ import annotations

from murmur.v1 import types_pb2


def without_secret_values(spec: types_pb2.JobSpec) -> types_pb2.JobSpec:
    """``spec`` as answers show it: its secrets' names in ``secret_names``, no values.

    Returns ``spec`` itself when it holds no secret value (no copy).
    """
    if not spec.secrets:
        return spec
    shown = types_pb2.JobSpec()
    shown.CopyFrom(spec)
    names = sorted(shown.secrets)
    shown.ClearField("secrets")
    del shown.secret_names[:]
    shown.secret_names.extend(names)
    return shown
