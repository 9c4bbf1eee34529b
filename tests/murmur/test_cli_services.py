"""`murmur service ...` end to end, in subprocesses, against a real node: create a
service of a small OpenAI-compatible server, see it ready, scale it, update it (its
model and count kept), delete it; bad input is one line on stderr and a non-zero
exit."""

from __future__ import annotations

import json
import sys
import time

from tests.support import openai_server
from tests.support.nodes import Lab, NodeProcess


def shown(lab: Lab, node: NodeProcess) -> dict[str, object]:
    answer = lab.murmur("service", "show", "toy", "--json", "--node", node.address)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)  # type: ignore[no-any-return]


def until_ready(lab: Lab, node: NodeProcess, count: int) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        service = shown(lab, node)
        if service.get("ready", 0) == count and len(service["replicas"]) == count:  # type: ignore[arg-type]
            return service
        assert time.monotonic() < deadline, service
        time.sleep(0.2)


def test_a_service_is_created_listed_scaled_and_deleted(lab: Lab, ca_node: NodeProcess) -> None:
    try:
        create_scale_delete(lab, ca_node)
    finally:  # a failure must not leave replicas running after the node is gone
        lab.murmur("service", "delete", "toy", "--node", ca_node.address)


def create_scale_delete(lab: Lab, ca_node: NodeProcess) -> None:
    created = lab.murmur(
        "service", "create", "toy", "--model", "toy-llm", "--alias", "toy",
        "--replicas", "2", "--runtime", "process", "--ready-period", "200ms",
        "--port-name", "api", "--node", ca_node.address, "--shell", "--",
        f'echo "named $PORT_API"; exec {sys.executable} -S {openai_server.__file__} '
        "--model toy-llm",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "toy"
    service = until_ready(lab, ca_node, 2)
    replicas = service["replicas"]
    assert all(replica["port"] and replica["node"] == ca_node.name for replica in replicas)  # type: ignore[index,union-attr]
    listing = lab.murmur("service", "list", "--node", ca_node.address)
    assert listing.stdout.splitlines()[1].split()[:3] == ["toy", "toy-llm", "2/2"]
    text = lab.murmur("service", "show", "toy", "--node", ca_node.address).stdout
    assert "models: toy-llm, toy" in text
    # Each replica's output, behind its slot; --replica picks one, bare.
    ports = {replica.get("slot", 0): replica["port"] for replica in replicas}  # type: ignore[union-attr,index]
    logs = lab.murmur("service", "logs", "toy", "--node", ca_node.address)
    assert logs.returncode == 0, logs.stderr
    served = [line for line in logs.stdout.splitlines() if "serving" in line]
    assert sorted(served) == [
        f"[{slot}] serving toy-llm on {port}" for slot, port in sorted(ports.items())
    ]
    assert all(line.startswith(("[0] ", "[1] ")) for line in logs.stdout.splitlines())
    named = sorted(line for line in logs.stdout.splitlines() if "named" in line)
    assert named == [f"[{slot}] named {port}" for slot, port in sorted(ports.items())]
    one = lab.murmur("service", "logs", "toy", "--replica", "1", "--node", ca_node.address)
    assert f"serving toy-llm on {ports[1]}" in one.stdout.splitlines()
    assert not any(line.startswith("[") for line in one.stdout.splitlines())
    missing = lab.murmur("service", "logs", "toy", "--replica", "7", "--node", ca_node.address)
    assert missing.returncode == 1
    assert missing.stderr.strip().endswith("service toy has no replica 7")
    scaled = lab.murmur("service", "scale", "toy", "1", "--node", ca_node.address)
    assert scaled.returncode == 0, scaled.stderr
    until_ready(lab, ca_node, 1)
    updated = lab.murmur(
        "service", "update", "toy", "--runtime", "process", "--ready-period", "200ms",
        "--node", ca_node.address, "--shell", "--",
        f"exec {sys.executable} -S {openai_server.__file__} --model toy-llm --adapter sql",
    )  # fmt: skip
    assert updated.returncode == 0, updated.stderr
    assert "revision 2" in updated.stderr
    deadline = time.monotonic() + 30
    while True:
        service = until_ready(lab, ca_node, 1)
        (replica,) = service["replicas"]  # type: ignore[misc]
        if replica.get("revision") == 2 and replica.get("ready"):
            break
        assert time.monotonic() < deadline, service
        time.sleep(0.2)
    assert service["spec"]["model"] == "toy-llm"  # type: ignore[index]
    assert "--adapter sql" in " ".join(service["spec"]["template"]["command"])  # type: ignore[index]
    deleted = lab.murmur("service", "delete", "toy", "--node", ca_node.address)
    assert deleted.returncode == 0, deleted.stderr
    gone = lab.murmur("service", "show", "toy", "--node", ca_node.address)
    assert gone.returncode != 0
    assert "no service toy" in gone.stderr


def test_bad_input_is_one_line_and_a_failure(lab: Lab, ca_node: NodeProcess) -> None:
    for args in (
        ("service", "create", "Bad_Name", "--model", "m", "--", "true"),
        ("service", "create", "ok", "--model", "a:b", "--", "true"),
        ("service", "create", "ok", "--model", "m"),
        ("service", "scale", "nope", "2"),
        ("service", "update", "nope", "--", "true"),
    ):
        answer = lab.murmur(*args, "--node", ca_node.address)
        assert answer.returncode != 0, args
        assert len(answer.stderr.strip().splitlines()) == 1, answer.stderr
