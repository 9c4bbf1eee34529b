"""A bundle's install.sh with the network gone: it verifies first, installs under
ROOT/opt/murmur/<version>/, links ROOT/usr/local/bin/murmur, writes the systemd unit
and the node config (once), loads the images; a wrong key or a changed byte installs
nothing. And `murmur node install` itself (node/system_service.py).

install.sh runs in a new network namespace (``unshare --net``): only a loopback
that is down, so any network call it made would fail it. The fake onedir's
``murmur`` runs this checkout's code (tests/bundle/fake_build.py); the frozen build
itself is installed and started by scripts/dist-smoke.sh (``make dist-check``).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from murmur.bundle.create import WheelSource, create_bundle
from murmur.bundle.signing import generate_key, load_private_key, public_path
from murmur.node.config import ConfigError, load_node_config
from murmur.node.system_service import NodeSettings, install_service, unit_text
from tests.bundle.fake_build import make_fake_onedir

FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$DOCKER_CALLS"
if [ "$1" = image ]; then echo sha256:{digest}; exit 0; fi
if [ "$1" = save ]; then echo "image $4" > "$3"; exit 0; fi
if [ "$1" = load ]; then exit 0; fi
exit 1
""".replace("{digest}", "cd" * 32)


def _no_network_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "a network namespace (unshare --net) needs root"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare --net failed: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A bundle with a wheel and an image, its keys, and a stand-in docker."""
    work = tmp_path_factory.mktemp("made")
    generate_key(work / "release.key")
    generate_key(work / "other.key")
    tools = work / "tools"
    tools.mkdir()
    (tools / "docker").write_text(FAKE_DOCKER)
    (tools / "docker").chmod(0o755)
    wheels = work / "wheels"
    wheels.mkdir()
    (wheels / "murmur_cluster-0.1.0-py3-none-any.whl").write_bytes(b"PK fake wheel")
    os.environ["DOCKER_CALLS"] = str(work / "create-calls")
    try:
        create_bundle(
            work / "bundle",
            key=load_private_key(work / "release.key"),
            onedirs=[make_fake_onedir(work / "onedir")],
            wheels=WheelSource(directory=wheels),
            images=["lab/base:1"],
            docker=str(tools / "docker"),
        )
    finally:
        del os.environ["DOCKER_CALLS"]
    return {
        "bundle": work / "bundle",
        "public": public_path(work / "release.key"),
        "other": public_path(work / "other.key"),
        "tools": tools,
    }


def install(
    made: dict[str, Path], bundle: Path, root: Path, *args: str, key: Path | None = None
) -> subprocess.CompletedProcess[str]:
    why = _no_network_unavailable()
    if why is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{why} (CI=true: this test must run, not skip)")
        pytest.skip(why)
    env = {
        "PATH": f"{made['tools']}:/usr/bin:/bin",
        "DOCKER_CALLS": str(root.parent / f"{root.name}-docker-calls"),
        "MURMUR_NODE_TOKEN": "one-time-token",
        "HOME": str(root.parent),
    }
    return subprocess.run(
        ["unshare", "--net", "sh", str(bundle / "install.sh"),
         "--key", str(key or made["public"]), "--root", str(root), *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_install_sh_installs_a_verified_bundle_with_no_network(
    made: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "root"
    done = install(
        made, made["bundle"], root,
        "--", "--name", "gpu1", "--listen", "0.0.0.0:7070", "--advertise", "10.0.0.1:7070",
        "--join", "10.0.0.9:7070",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stderr
    home = root / "opt" / "murmur" / "0.1.0"
    assert os.access(home / "murmur", os.X_OK)
    assert (home / "wheels" / "murmur_cluster-0.1.0-py3-none-any.whl").exists()
    assert (home / "manifest.json").exists()
    assert os.readlink(root / "usr" / "local" / "bin" / "murmur") == "/opt/murmur/0.1.0/murmur"

    unit = (root / "etc" / "systemd" / "system" / "murmur.service").read_text()
    assert "ExecStart=/usr/local/bin/murmur node start --config /etc/murmur/node.toml\n" in unit
    assert "KillMode=process\n" in unit
    assert "EnvironmentFile=-/etc/murmur/join.env\n" in unit

    config_path = root / "etc" / "murmur" / "node.toml"
    config = load_node_config(config_file=config_path, env={})
    assert (config.name, str(config.listen), str(config.advertise)) == (
        "gpu1",
        "0.0.0.0:7070",
        "10.0.0.1:7070",
    )
    assert config.data_dir == Path("/var/lib/murmur")
    join = root / "etc" / "murmur" / "join.env"
    assert stat.S_IMODE(join.stat().st_mode) == 0o600
    assert join.read_text() == "MURMUR_NODE_JOIN=10.0.0.9:7070\nMURMUR_NODE_TOKEN=one-time-token\n"
    calls = (tmp_path / "root-docker-calls").read_text().splitlines()
    assert calls == [f"load -i {made['bundle']}/images/lab_base_1.tar"]

    # Again, as an upgrade to the same version would: the config is kept, the old
    # tree moved aside (a daemon may run from it), the unit rewritten.
    config_path.write_text(config_path.read_text() + 'log_level = "debug"\n')
    again = install(made, made["bundle"], root, "--no-images")
    assert again.returncode == 0, again.stderr
    assert "kept the node config" in again.stderr
    assert 'log_level = "debug"' in config_path.read_text()
    assert [p.name for p in (root / "opt" / "murmur").iterdir() if "replaced" in p.name]


@pytest.mark.parametrize("tamper", ["flipped-byte", "wrong-key", "extra-file"])
def test_install_sh_installs_nothing_from_a_bundle_that_does_not_verify(
    made: dict[str, Path], tmp_path: Path, tamper: str
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(made["bundle"], bundle)
    key = made["public"]
    if tamper == "flipped-byte":
        wheel = bundle / "wheels" / "murmur_cluster-0.1.0-py3-none-any.whl"
        data = bytearray(wheel.read_bytes())
        data[0] ^= 0x01
        wheel.write_bytes(bytes(data))
    elif tamper == "wrong-key":
        key = made["other"]
    else:
        (bundle / "linux-x86_64" / "murmur" / "_internal" / "evil.so").write_bytes(b"x")
    root = tmp_path / "root"
    done = install(made, bundle, root, key=key)
    assert done.returncode != 0
    assert "did not verify: nothing was installed" in done.stderr
    assert not root.exists()


def test_node_install_keeps_a_config_validates_a_new_one_and_joins_once(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="node name 'GPU 1' is invalid"):
        install_service(tmp_path, NodeSettings(name="GPU 1"))
    assert not (tmp_path / "etc" / "murmur").exists()
    with pytest.raises(ConfigError, match="go together"):
        install_service(tmp_path, NodeSettings(), join="10.0.0.1:7070")

    installed = install_service(tmp_path, NodeSettings(name="gpu2"))
    assert installed.config_written
    assert stat.S_IMODE(installed.config.stat().st_mode) == 0o600
    again = install_service(tmp_path, NodeSettings(name="other"))
    assert not again.config_written
    assert load_node_config(config_file=again.config, env={}).name == "gpu2"

    identity = tmp_path / "var" / "lib" / "murmur" / "identity.pem"
    identity.parent.mkdir(parents=True)
    identity.write_text("an identity")
    with pytest.raises(ConfigError, match="already holds a node identity"):
        install_service(tmp_path, NodeSettings(), join="10.0.0.1:7070", token="t")


def test_the_unit_lets_runs_outlive_the_daemon_and_deletes_the_join_file() -> None:
    text = unit_text(
        binary=PurePosixPath("/usr/local/bin/murmur"),
        config=PurePosixPath("/etc/murmur/node.toml"),
        join_env=PurePosixPath("/etc/murmur/join.env"),
    )
    assert "KillMode=process" in text
    assert "ExecStartPost=-/bin/rm -f /etc/murmur/join.env" in text
    assert "WantedBy=multi-user.target" in text
