"""What start-up loads: ``import murmur`` alone, the daemon, the CLI's quick answers.

The run supervisors import ``murmur``, and ``murmur --help`` should answer at once:
neither pays for grpc, protobuf, cryptography, asyncio, Textual, the Docker SDK or
NVML; the daemon loads NVML only to probe real GPUs. ``murmur status`` and ``murmur
job submit`` need grpc (which brings asyncio) and protobuf, but not cryptography once
their identity file is recorded as checked, nor what else they were spared (the
timings: tests/bench/bench_scripting.py). Each check runs in a fresh interpreter,
since this one has all of them loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from murmur.certs import CertificateAuthority, Role
from tests.support.nodes import free_port

HEAVY = ("grpc", "google.protobuf", "cryptography", "asyncio", "textual", "docker", "pynvml")


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Runs ``code`` in a fresh interpreter; returns the JSON it prints."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def heavy_among(modules: list[str]) -> list[str]:
    """The heavy packages loaded (a submodule loads its package, so names suffice)."""
    return [name for name in HEAVY if name in modules]


AFTER_IMPORT = """
import json, sys
{statement}
print(json.dumps(sorted(sys.modules)))
"""


def modules_after(statement: str) -> list[str]:
    modules: list[str] = run_python(AFTER_IMPORT.format(statement=statement))
    return modules


def test_import_murmur_loads_murmur_alone() -> None:
    modules = modules_after("import murmur")
    assert heavy_among(modules) == []
    assert [name for name in modules if name.startswith("murmur.")] == []


def test_a_message_loads_protobuf_but_not_grpc() -> None:
    modules = modules_after("import murmur; murmur.JobSpec")
    assert "google.protobuf" in modules
    assert "grpc" not in modules


def test_the_daemon_with_simulated_gpus_loads_neither_textual_nor_nvml() -> None:
    modules = modules_after(
        "import murmur.node.daemon\n"
        "from murmur.node.agent.gpus import open_gpu_probe\n"
        "open_gpu_probe(simulate='2xA100-80GB').close()"
    )
    assert "textual" not in modules
    assert "pynvml" not in modules


CLI = """
import contextlib, io, json, sys
from murmur._cli.main import main
with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


@pytest.mark.parametrize(
    "command",
    [
        "--help",
        "--version",
        "status --help",
        "job submit --help",
        "top --help",
        "node start --help",
        "job list --state nonsense",  # a usage error: exit code 2
    ],
)
def test_the_cli_answers_help_version_and_usage_errors_without_heavy_imports(
    command: str,
) -> None:
    result = run_python(CLI, *command.split())
    assert result["code"] == (2 if "nonsense" in command else 0)
    assert heavy_among(result["modules"]) == []


def test_version_still_prints_the_installed_version() -> None:
    import murmur

    assert run_python(CLI, "--version")["out"] == f"murmur {murmur.__version__}\n"


SPARED_BY_COMMANDS = ("cryptography", "uuid", "shutil", "tomllib", "textual", "docker", "pynvml")
"""What `murmur status` and `murmur job submit` no longer load: cryptography (the
identity file recorded as checked), uuid (idempotency keys from os.urandom), shutil
(argparse's formatter, for the terminal's width), tomllib (no client settings file)."""


def member_env_with_no_node(tmp_path: Path) -> dict[str, str]:
    """A member's identity, a fresh Murmur home, and a node address nobody listens on
    (a command gets as far as calling it, and fails)."""
    ca = CertificateAuthority.create(tmp_path / "ca")
    identity = tmp_path / "alice.pem"
    ca.issue(name="alice", role=Role.MEMBER, validity_days=30).write(identity)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MURMUR_")}
    return env | {
        "MURMUR_HOME": str(tmp_path / "home"),
        "MURMUR_IDENTITY": str(identity),
        "MURMUR_NODE": f"127.0.0.1:{free_port()}",
    }


@pytest.mark.parametrize(
    "command",
    ["status", "job submit --runtime process -- true"],
)
def test_status_and_submit_load_no_cryptography_once_the_identity_is_recorded(
    tmp_path: Path, command: str
) -> None:
    env = member_env_with_no_node(tmp_path)
    first = run_python(CLI, *command.split(), env=env)  # checks the identity, records it
    later = run_python(CLI, *command.split(), env=env)

    assert first["code"] == later["code"] == 1
    assert "cryptography" in first["modules"]
    assert {"grpc", "murmur._client"} <= set(later["modules"])
    assert [name for name in SPARED_BY_COMMANDS if name in later["modules"]] == []


COLLECTIONS = """
import asyncio, contextlib, gc, io, json, sys
from murmur._cli.main import main
in_loop = []  # for each collection: did an event loop run (the calls), or not (start-up)?

def note(phase, info):
    if phase == "start":
        in_loop.append(asyncio._get_running_loop() is not None)

gc.callbacks.append(note)
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "in_loop": in_loop, "enabled": gc.isenabled(),
                  "frozen": gc.get_freeze_count()}))
"""


@pytest.mark.parametrize("command", ["status", "job submit --runtime process -- true"])
def test_quick_commands_collect_no_garbage_while_they_import_only_once_their_calls_begin(
    tmp_path: Path, command: str
) -> None:
    """The start of `status` and `job submit` is mostly importing grpc and protobuf,
    which frees nothing: the collector waits until the calls begin (main pauses it,
    run_with_client resumes it), and then runs, over all but what was imported."""
    env = member_env_with_no_node(tmp_path)
    quick = run_python(COLLECTIONS, *command.split(), env=env)
    other = run_python(COLLECTIONS, "node", "list", env=env)  # not paused: collects early

    assert quick["code"] == other["code"] == 1
    assert quick["in_loop"]
    assert all(quick["in_loop"])
    assert quick["enabled"]
    assert quick["frozen"] > 10_000
    assert not all(other["in_loop"])
