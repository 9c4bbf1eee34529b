"""Fixtures the Docker runtime tests share: a node name of their own whose
containers are removed afterwards, and a Docker SDK client on the test engine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from murmur.node.agent.runtimes.docker_labels import LABEL_NODE
from tests.support.docker_engine import DockerEngine


@pytest.fixture
def node_name(docker_engine: DockerEngine) -> Iterator[str]:
    """A node name for this test only; its containers are removed when the test ends."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    yield name
    client = docker.DockerClient(base_url=docker_engine.host, version="auto")
    try:
        for container in client.containers.list(
            all=True, filters={"label": f"{LABEL_NODE}={name}"}
        ):
            container.remove(force=True)
    finally:
        client.close()


@pytest.fixture
def client(docker_engine: DockerEngine) -> Iterator[Any]:
    sdk = docker.DockerClient(base_url=docker_engine.host, version="auto")
    yield sdk
    sdk.close()
