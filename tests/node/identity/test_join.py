"""A new server joins with a one-time token and gets its certificate from the lab CA.

Every refusal is one line on stderr, exit code 1, and leaves no identity behind.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from murmur.certs import CertificateAuthority, IdentityBundle, JoinToken, Role
from tests.support.nodes import Lab, NodeProcess, free_port, free_ports


def create_token(lab: Lab, node: NodeProcess, *extra: str) -> str:
    result = lab.murmur("token", "create", "--node", node.address, *extra)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert "\n" not in token, "stdout must hold only the token"
    return token


def start_failing(lab: Lab, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    port = free_port()
    return subprocess.run(
        [sys.executable, "-m", "murmur", "node", "start", "--name", "newbie",
         "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}", *args],
        env=lab.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]


def test_a_node_joins_and_holds_a_certificate_signed_by_the_lab_ca(
    lab: Lab, ca_node: NodeProcess
) -> None:
    token = create_token(lab, ca_node)
    joined = lab.start_node("node-2", extra_args=["--join", ca_node.address, "--token", token])
    bundle = IdentityBundle.read(joined.data_dir / "identity.pem")
    assert bundle.identity.name == "node-2"
    assert bundle.identity.role is Role.NODE
    assert bundle.ca_certificate_pem.strip() == lab.ca.certificate_pem.strip()
    certificate = x509.load_pem_x509_certificate(bundle.certificate_pem)
    ca_certificate = x509.load_pem_x509_certificate(lab.ca.certificate_pem)
    certificate.verify_directly_issued_by(ca_certificate)
    assert (joined.data_dir / "identity.pem").stat().st_mode & 0o777 == 0o600
    # The CA key never left its node.
    assert not (joined.data_dir / "ca").exists()
    # The joined node serves; the join is audited on the CA node.
    assert lab.murmur("status", "--node", joined.address).returncode == 0
    audit = lab.murmur("audit", "--node", ca_node.address).stdout
    assert "Join" in audit
    assert "node-2" in audit
    # A restart reuses the identity: no token needed any more.
    assert joined.terminate() == 0
    lab.start_node("node-2", data_dir=joined.data_dir)


def test_a_used_token_is_refused_and_changes_nothing(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    token = create_token(lab, ca_node)
    lab.start_node("node-2", extra_args=["--join", ca_node.address, "--token", token])
    result = start_failing(lab, tmp_path / "third", "--join", ca_node.address, "--token", token)
    assert_one_line_refusal(result, "already used")
    assert not (tmp_path / "third" / "identity.pem").exists()
    assert not (tmp_path / "third" / "murmur.db").exists()


def test_an_expired_token_is_refused(lab: Lab, ca_node: NodeProcess, tmp_path: Path) -> None:
    token = create_token(lab, ca_node, "--ttl", "1s")
    time.sleep(1.5)
    result = start_failing(lab, tmp_path / "late", "--join", ca_node.address, "--token", token)
    assert_one_line_refusal(result, "expired")
    assert not (tmp_path / "late" / "identity.pem").exists()


def test_a_token_pinning_another_ca_is_refused(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    token = JoinToken.decode(create_token(lab, ca_node))
    other = CertificateAuthority.create(tmp_path / "other-ca")
    forged = dataclasses.replace(token, ca_fingerprint=other.fingerprint).encode()
    result = start_failing(lab, tmp_path / "pinned", "--join", ca_node.address, "--token", forged)
    assert_one_line_refusal(result, "pinned")
    assert not (tmp_path / "pinned" / "identity.pem").exists()


def test_a_wrong_secret_is_refused_without_burning_the_token(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    real = create_token(lab, ca_node)
    guessed = dataclasses.replace(JoinToken.decode(real), secret="x" * 43).encode()
    result = start_failing(lab, tmp_path / "guess", "--join", ca_node.address, "--token", guessed)
    assert_one_line_refusal(result, "join")
    lab.start_node("node-2", extra_args=["--join", ca_node.address, "--token", real])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--join", "127.0.0.1:1", "--token", "garbage"], "not a murmur join token"),
        (["--join", "127.0.0.1:1"], "--join and --token go together"),
        ([], "no identity in"),
        (["--simulate-gpus", "8xA100-lots"], "invalid --simulate-gpus"),
        (["--listen", "nowhere"], "must look like HOST:PORT"),
    ],
)
def test_bad_start_arguments_are_one_line(
    lab: Lab, tmp_path: Path, args: list[str], fragment: str
) -> None:
    result = start_failing(lab, tmp_path / "bad", *args)
    assert_one_line_refusal(result, fragment)
    assert not (tmp_path / "bad" / "identity.pem").exists()


def test_an_unwritable_data_dir_is_one_line(lab: Lab, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = start_failing(lab, blocker / "data")
    assert_one_line_refusal(result, "is not writable")


def test_a_malformed_config_file_is_one_line(lab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("listen = [unclosed\n")
    result = start_failing(lab, tmp_path / "cfg", "--config", str(config))
    assert_one_line_refusal(result, "is not valid TOML")
    config.write_text('lisen = "127.0.0.1:7070"\n')
    result = start_failing(lab, tmp_path / "cfg", "--config", str(config))
    assert_one_line_refusal(result, "unknown setting 'lisen'")


def test_an_unknown_flag_is_one_line_with_exit_code_2(lab: Lab) -> None:
    result = lab.murmur("node", "start", "--bogus")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--bogus" in result.stderr


def test_any_node_creates_tokens(lab: Lab, ca_node: NodeProcess) -> None:
    """Tokens live in the control log: one made through a node without the CA key
    admits a node through the CA holder's join listener."""
    token = create_token(lab, ca_node)
    # Every node's join port is the same (a token names it; each server its own host):
    # node-2 holds no key, so it does not listen on it here.
    join_port = int(ca_node.join_address.rsplit(":", 1)[1])
    joined = lab.start_node(
        "node-2",
        ports=(free_port(), join_port),
        extra_args=["--join", ca_node.address, "--token", token],
    )
    other = create_token(lab, joined)
    lab.start_node("node-3", extra_args=["--join", ca_node.address, "--token", other])


def test_a_name_already_in_the_cluster_cannot_join_again(
    lab: Lab, ca_node: NodeProcess, tmp_path: Path
) -> None:
    token = create_token(lab, ca_node)
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "murmur", "node", "start", "--name", "node-1",
         "--data-dir", str(tmp_path / "impostor"), "--listen", f"127.0.0.1:{port}",
         "--join", ca_node.address, "--token", token],
        env=lab.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert_one_line_refusal(result, "already joined")
    # The refusal did not burn the token.
    lab.start_node("node-2", extra_args=["--join", ca_node.address, "--token", token])


def leader_and_term(lab: Lab, node: NodeProcess) -> tuple[str, object]:
    result = lab.murmur("status", "--json", "--node", node.address)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    return status.get("leader", ""), status.get("term")


def test_join_flags_on_a_data_dir_that_holds_an_identity_are_refused(
    lab: Lab, ca_node: NodeProcess
) -> None:
    token = create_token(lab, ca_node)
    joined = lab.start_node("node-2", extra_args=["--join", ca_node.address, "--token", token])
    assert joined.terminate() == 0
    identity = (joined.data_dir / "identity.pem").read_bytes()
    deadline = time.monotonic() + 30
    while (before := leader_and_term(lab, ca_node))[0] != "node-1":
        assert time.monotonic() < deadline, f"no leader: {before}"
        time.sleep(0.2)
    fresh = create_token(lab, ca_node)
    port, join_port = free_ports()
    result = subprocess.run(
        [sys.executable, "-m", "murmur", "node", "start", "--data-dir", str(joined.data_dir),
         "--listen", f"127.0.0.1:{port}", "--join-listen", f"127.0.0.1:{join_port}",
         "--join", ca_node.address, "--token", fresh],
        env=lab.env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert_one_line_refusal(
        result,
        f"murmur node: data dir {joined.data_dir} already holds the identity of node 'node-2' "
        f"(cluster CA {lab.ca.fingerprint[:16]}...): --join/--token are only for a new data "
        "dir; start without them to restart this node, or pass a new --data-dir to join as "
        "another node",
    )
    assert (joined.data_dir / "identity.pem").read_bytes() == identity
    # The CA node goes on, still the only leader, in the same term.
    assert ca_node.process.poll() is None
    assert leader_and_term(lab, ca_node) == before
    # The refusal did not use the token, and a plain restart (Lab.restart drops the
    # flags the node first started with) brings the node back.
    lab.start_node("node-3", extra_args=["--join", ca_node.address, "--token", fresh])
    restarted = lab.restart(joined)
    assert restarted.extra_args == ()
    assert leader_and_term(lab, ca_node)[0] == "node-1"
