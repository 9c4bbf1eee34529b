"""``murmur node install``: make this server run a node under systemd (the unit, the
config once, a one-time join); the logic is node/system_service.py. A bundle's
``install.sh`` runs it after copying the build into place."""

from __future__ import annotations

import argparse
import os
from pathlib import Path, PurePosixPath
from typing import Any

from murmur._cli.errors import CommandError
from murmur._cli.output import note


def register(actions: Any) -> None:
    install = actions.add_parser(
        "install",
        help="write the systemd unit and, if there is none, the node config (as root)",
    )
    install.add_argument(
        "--root", type=Path, default=Path("/"), metavar="DIR",
        help="write under DIR instead of / (an image or chroot being prepared)",
    )  # fmt: skip
    install.add_argument(
        "--binary", type=PurePosixPath, default=None, metavar="PATH",
        help="the murmur the unit runs, as the server sees it (default /usr/local/bin/murmur)",
    )  # fmt: skip
    install.add_argument(
        "--config", type=PurePosixPath, default=None, metavar="FILE",
        help="the node config the unit names (default /etc/murmur/node.toml)",
    )  # fmt: skip
    install.add_argument(
        "--data-dir", type=PurePosixPath, default=None, metavar="DIR",
        help="for a new config: the node's data dir (default /var/lib/murmur)",
    )  # fmt: skip
    install.add_argument("--name", help="for a new config: the node name (default: host name)")
    install.add_argument("--listen", metavar="HOST:PORT", help="for a new config: API address")
    install.add_argument(
        "--advertise", metavar="HOST:PORT", help="for a new config: address others dial"
    )
    install.add_argument(
        "--join", metavar="HOST:PORT",
        help="join this cluster on the first start (token from $MURMUR_NODE_TOKEN)",
    )  # fmt: skip
    install.set_defaults(handler=install_command)


def install_command(args: argparse.Namespace) -> int:
    from murmur.node.config import ConfigError
    from murmur.node.system_service import (
        BINARY,
        CONFIG,
        DATA_DIR,
        NodeSettings,
        install_service,
    )

    token = os.environ.get("MURMUR_NODE_TOKEN") if args.join else None
    if args.join and not token:
        raise CommandError("--join needs the join token in $MURMUR_NODE_TOKEN")
    settings = NodeSettings(
        data_dir=args.data_dir or DATA_DIR,
        name=args.name,
        listen=args.listen,
        advertise=args.advertise,
    )
    for path, flag in ((args.binary, "--binary"), (args.config, "--config")):
        if path is not None and not path.is_absolute():
            raise CommandError(f"{flag} must be an absolute path, as the server sees it")
    try:
        installed = install_service(
            args.root,
            settings,
            binary=args.binary or BINARY,
            config=args.config or CONFIG,
            join=args.join,
            token=token,
        )
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot write {exc.filename}: {exc.strerror}") from None
    note(f"murmur: wrote the systemd unit {installed.unit}")
    if installed.config_written:
        note(f"murmur: wrote the node config {installed.config}")
    else:
        note(f"murmur: kept the node config {installed.config} (it existed)")
    if installed.join_env is not None:
        note(f"murmur: the first start joins {args.join} (token in {installed.join_env}, 0600)")
    note("murmur: start it: systemctl daemon-reload && systemctl enable --now murmur")
    return 0
