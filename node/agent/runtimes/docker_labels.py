"""How a run's container is known in the engine: its name and the labels Murmur puts on it.

The docker runtime finds its node's containers by ``murmur.node`` after a restart,
and the lease guard touches a container only while it carries the run's
``murmur.run_id``. It imports nothing: the lease guard imports it at start.
"""

from __future__ import annotations

LABEL_NODE = "murmur.node"
LABEL_RUN = "murmur.run_id"
LABEL_JOB = "murmur.job_id"


def container_name(run_id: str) -> str:
    return f"murmur-{run_id}"
