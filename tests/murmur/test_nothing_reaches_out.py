"""Nothing reaches out (docs/operations.md, "What Murmur never does"): a node, the CLI
against it and a process job work in a network namespace that has only loopback,
and no process of them even tries to reach an address outside loopback.

Everything runs under ``strace -f`` in a new network and pid namespace (the pid
namespace ends every process with the run): each ``connect``, ``sendto``,
``sendmsg`` and ``sendmmsg`` with an Internet address is read from the trace, and
any destination outside 127.0.0.0/8 and ::1 fails the test, whether or not the
call succeeded (with no route it fails at once; an update check, a telemetry ping,
an image pull or a DNS query for an outside name would all show here).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.netns import netns_unavailable

REPOSITORY = Path(__file__).resolve().parents[2]

_INET = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)')
_INET6 = re.compile(
    r'sa_family=AF_INET6, sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([^"]+)"'
)


def _unavailable() -> str | None:
    why = netns_unavailable()
    if why is not None:
        return why
    if shutil.which("strace") is None:
        return "strace is not installed (scripts/install-test-deps.sh installs it)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    return None


def destinations(trace: str) -> list[tuple[str, int, str]]:
    """(address, port, trace line) of every Internet destination in an strace log."""
    found = []
    for line in trace.splitlines():
        for pattern in (_INET, _INET6):
            for port, address in pattern.findall(line):
                found.append((address, int(port), line))
    return found


def is_loopback(address: str) -> bool:
    parsed = ipaddress.ip_address(address)
    mapped = getattr(parsed, "ipv4_mapped", None)  # gRPC dials ::ffff:127.0.0.1
    return (mapped or parsed).is_loopback


def outside_loopback(trace: str) -> list[str]:
    return [line for address, _, line in destinations(trace) if not is_loopback(address)]


@pytest.mark.serial
def test_the_trace_reader_sees_what_leaves_loopback() -> None:
    trace = "\n".join(
        [
            '12 connect(5, {sa_family=AF_INET, sin_port=htons(7070), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',  # noqa: E501
            '12 connect(6, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = -1 ENETUNREACH',  # noqa: E501
            '13 sendto(7, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28) = -1',  # noqa: E501
            '14 connect(8, {sa_family=AF_UNIX, sun_path="/run/docker.sock"}, 110) = 0',
            '15 connect(9, {sa_family=AF_INET6, sin6_port=htons(7070), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6_addr), sin6_scope_id=0}, 28) = 0',  # noqa: E501
            '15 connect(9, {sa_family=AF_INET6, sin6_port=htons(7070), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::ffff:10.0.0.1", &sin6_addr), sin6_scope_id=0}, 28) = 0',  # noqa: E501
        ]
    )
    assert [address for address, _, _ in destinations(trace)] == [
        "127.0.0.1",
        "10.255.255.53",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
    ]
    assert len(outside_loopback(trace)) == 3


@pytest.mark.serial
def test_a_node_the_cli_and_a_job_work_with_only_loopback_and_reach_nothing_else(
    tmp_path: Path,
) -> None:
    why = _unavailable()
    if why is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{why} (CI=true: this test must run, not skip)")
        pytest.skip(why)
    trace_file = tmp_path / "strace.log"
    # The defaults, as on a fresh server: no Docker engine named elsewhere.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MURMUR_") and k != "DOCKER_HOST"
    }
    run = subprocess.run(
        [
            "unshare", "--net", "--pid", "--fork", "--mount-proc",
            "strace", "-f", "-qq", "--seccomp-bpf", "-e", "signal=none",
            "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-o", str(trace_file),
            "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
            sys.executable, "-m", "tests.support.offline_run", str(tmp_path / "lab"),
        ],
        cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=100,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    (tmp_path / "lab").mkdir(exist_ok=True)
    result = json.loads((tmp_path / "lab" / "result.json").read_text())
    log = result.get("node_log", "")
    assert result["status"][0] == 0, (result["status"], log)
    assert result["submit"][0] == 0, (result["submit"], log)
    assert result["job_state"] == "JOB_STATE_SUCCEEDED", (result.get("job"), log)
    assert result["logs"][0] == 0
    assert "offline-ok" in result["logs"][1].splitlines()
    assert result["node_list"][0] == 0
    assert result["exit_code"] == 0, log
    trace = trace_file.read_text()
    # The trace did see the network calls: the CLI dialling the node on loopback.
    port = int(result["address"].rsplit(":", 1)[1])
    assert any(p == port for _, p, _ in destinations(trace)), trace[-2000:]
    assert outside_loopback(trace) == []
