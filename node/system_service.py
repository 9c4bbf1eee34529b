"""The node as a system service: its systemd unit, its config file and a one-time
join, written by ``murmur node install`` (and so by a bundle's ``install.sh``).

Paths are given as the server will see them (``/etc/murmur/node.toml``) and written
under ``root`` (``/`` on the server itself; a directory when an image or a chroot is
prepared), so the unit names the right files either way.

- The unit is rewritten by every install (an upgrade may change it; local changes
  belong in a drop-in, ``systemctl edit murmur``). ``KillMode=process``: a run's
  supervisor is in the unit's cgroup, and runs must outlive a stop or restart of
  the daemon (an upgrade swaps the binary under running jobs).
- The config is written only when there is none, and validated by the one loader
  of node settings (:func:`murmur.node.config.load_node_config`) before it is.
- A join (``--join HOST:PORT`` with a token) cannot live in the config: a data dir
  that already holds an identity refuses ``join``, so the node would not start again
  after joining. It goes to ``join.env`` (0600), which the unit passes to the first
  start as ``MURMUR_NODE_JOIN``/``MURMUR_NODE_TOKEN`` and deletes once the daemon
  has it (``ExecStartPost``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from murmur.node.config import ConfigError, HostPort, load_node_config

UNIT = PurePosixPath("/etc/systemd/system/murmur.service")
CONFIG = PurePosixPath("/etc/murmur/node.toml")
JOIN_ENV = PurePosixPath("/etc/murmur/join.env")
BINARY = PurePosixPath("/usr/local/bin/murmur")
DATA_DIR = PurePosixPath("/var/lib/murmur")
"""Not ``~/.murmur`` of root: jobs' accounts must pass through the data dir's parents
to reach their scratch dirs (docs/operations.md, "Files in the data dir")."""

STOP_TIMEOUT_SECONDS = 60
"""systemd's wait after SIGTERM; the node's own shutdown grace (5 s by default)
fits well within it, and the runs are not waited for (they go on)."""


@dataclass(frozen=True)
class NodeSettings:
    """What ``node install`` puts in a new config file; None: the node's default."""

    data_dir: PurePosixPath = DATA_DIR
    name: str | None = None
    listen: str | None = None
    advertise: str | None = None
    log_level: str | None = None


@dataclass(frozen=True)
class Installed:
    unit: Path
    config: Path
    config_written: bool
    """False: a config was there and was kept."""
    join_env: Path | None


def under(root: Path, path: PurePosixPath) -> Path:
    """``path`` (absolute, as the server sees it) inside ``root``."""
    return root / path.relative_to("/")


def unit_text(*, binary: PurePosixPath, config: PurePosixPath, join_env: PurePosixPath) -> str:
    return f"""\
# Written by `murmur node install`; the next install rewrites it. Put local changes
# in a drop-in: systemctl edit murmur
[Unit]
Description=Murmur node (peer-to-peer GPU cluster)
After=network-online.target docker.service
Wants=network-online.target

[Service]
Type=simple
# A first start that joins a cluster reads the join address and one-time token from
# here (murmur node install --join); the file is deleted once the daemon has them.
EnvironmentFile=-{join_env}
ExecStart={binary} node start --config {config}
ExecStartPost=-/bin/rm -f {join_env}
# Jobs outlive the daemon: their supervisors sit in this unit's cgroup, and a stop,
# restart or upgrade of the daemon must not kill them. SIGTERM goes to the daemon only.
KillMode=process
TimeoutStopSec={STOP_TIMEOUT_SECONDS}
Restart=on-failure
RestartSec=5
LimitNOFILE=1048576

[Install]
WantedBy=multi-user.target
"""


def config_text(settings: NodeSettings) -> str:
    """The ``[node]`` table of a new config file (TOML strings written as JSON
    strings, which TOML's basic strings read the same)."""
    lines = [
        "# Written by `murmur node install`; docs/operations.md lists every setting.",
        "[node]",
    ]
    values = {
        "name": settings.name,
        "data_dir": str(settings.data_dir),
        "listen": settings.listen,
        "advertise": settings.advertise,
        "log_level": settings.log_level,
    }
    lines += [f"{key} = {json.dumps(value)}" for key, value in values.items() if value is not None]
    return "\n".join(lines) + "\n"


def check_config(text: str) -> None:
    """Raises: ConfigError: the node would refuse this file (the loader's own words)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "node.toml"
        path.write_text(text, encoding="utf-8")
        try:
            load_node_config(config_file=path, env={})
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(str(path), "the new node config")) from None


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def install_service(
    root: Path,
    settings: NodeSettings,
    *,
    binary: PurePosixPath = BINARY,
    config: PurePosixPath = CONFIG,
    join: str | None = None,
    token: str | None = None,
) -> Installed:
    """Writes the unit, the config (unless there is one) and the join file.

    Raises:
        ConfigError: a setting the node would refuse, a join without a token (or the
            reverse), or a join into a data dir that already holds an identity.
    """
    if (join is None) != (token is None):
        raise ConfigError("--join and a token go together (the token from $MURMUR_NODE_TOKEN)")
    config_path = under(root, config)
    config_written = not config_path.exists()
    if config_written:
        text = config_text(settings)
        check_config(text)
    if join is not None:
        HostPort.parse(join, what="--join")
        data_dir = settings.data_dir
        if not config_written:
            existing = load_node_config(config_file=config_path, env={})
            data_dir = PurePosixPath(existing.data_dir)
        if under(root, data_dir).joinpath("identity.pem").exists():
            raise ConfigError(
                f"{data_dir} already holds a node identity: this server has joined; "
                "--join is for a new data dir only"
            )
    unit_path = under(root, UNIT)
    unit_path.parent.mkdir(parents=True, exist_ok=True)
    unit_path.write_text(unit_text(binary=binary, config=config, join_env=JOIN_ENV))
    unit_path.chmod(0o644)
    if config_written:
        # 0600: a config may come to hold a passphrase file's path, account maps...
        _write_private(config_path, text)
    join_path = None
    if join is not None and token is not None:
        join_path = under(root, JOIN_ENV)
        _write_private(join_path, f"MURMUR_NODE_JOIN={join}\nMURMUR_NODE_TOKEN={token}\n")
    return Installed(unit_path, config_path, config_written, join_path)
