"""``murmur bundle keygen|create|verify``: the signed offline install bundle
(murmur/bundle/, docs/install.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from murmur._cli.errors import CommandError
from murmur._cli.output import note


def register(commands: Any) -> None:
    bundle = commands.add_parser("bundle", help="make and check the signed offline install bundle")
    actions = bundle.add_subparsers(dest="bundle_command", metavar="ACTION")
    actions.required = True

    keygen = actions.add_parser("keygen", help="make a release key pair: KEY (0600) and KEY.pub")
    keygen.add_argument("--out", type=Path, required=True, metavar="KEY", help="the private key")
    keygen.set_defaults(handler=keygen_command)

    create = actions.add_parser(
        "create", help="lay out, hash and sign a bundle (on a connected machine)"
    )
    create.add_argument("--key", type=Path, required=True, metavar="KEY", help="the release key")
    create.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="the new bundle directory"
    )
    create.add_argument(
        "--onedir", type=Path, action="append", default=[], metavar="PATH",
        help="an onedir build of make dist (repeat: one per architecture; default: "
        "dist/onedir/murmur, or this program's own tree when it is the onedir build)",
    )  # fmt: skip
    create.add_argument(
        "--image", action="append", default=[], metavar="IMG",
        help="a job image of the local Docker engine to include (docker save; repeatable)",
    )  # fmt: skip
    wheels = create.add_mutually_exclusive_group()
    wheels.add_argument(
        "--wheelhouse", type=Path, metavar="DIR",
        help="take the client library's wheels from DIR (default: pip wheel, from the index)",
    )  # fmt: skip
    wheels.add_argument("--no-wheels", action="store_true", help="bundle no wheelhouse")
    create.add_argument(
        "--project", metavar="PATH|REQ",
        help="what pip wheel builds (default: this checkout, else murmur-cluster==VERSION)",
    )  # fmt: skip
    create.set_defaults(handler=create_command)

    verify = actions.add_parser("verify", help="check a bundle's signature and every file")
    verify.add_argument("bundle", type=Path, metavar="DIR")
    verify.add_argument(
        "--key", type=Path, required=True, metavar="PUB", help="the release public key"
    )
    verify.add_argument("--json", action="store_true", help="print the manifest as JSON")
    verify.set_defaults(handler=verify_command)


def keygen_command(args: argparse.Namespace) -> int:
    from murmur.bundle import BundleError
    from murmur.bundle.signing import fingerprint, generate_key, public_path

    try:
        public = generate_key(args.out)
    except BundleError as exc:
        raise CommandError(str(exc)) from None
    note(f"murmur: wrote the release key {args.out} (0600) and {public_path(args.out)}")
    note(f"murmur: fingerprint {fingerprint(public)}; keep {args.out} off the servers")
    return 0


def _default_onedirs() -> list[Path]:
    """This program's own tree when it is the onedir build, else make dist's output."""
    from murmur._frozen import is_frozen
    from murmur.bundle.create import BUILD_INFO

    if is_frozen():
        own = Path(sys.executable).resolve().parent
        if (own / BUILD_INFO).exists():
            return [own]
    built = Path("dist/onedir/murmur")
    if (built / BUILD_INFO).exists():
        return [built]
    raise CommandError("no onedir build here: run `make dist`, or pass --onedir PATH")


def _wheel_source(args: argparse.Namespace, version: str) -> Any:
    import murmur
    from murmur._frozen import is_frozen
    from murmur.bundle.create import WheelSource

    if args.no_wheels:
        return WheelSource()
    if args.wheelhouse is not None:
        return WheelSource(directory=args.wheelhouse)
    if is_frozen():
        raise CommandError(
            "the frozen build cannot run pip: pass --wheelhouse DIR (from `pip wheel "
            "--wheel-dir DIR murmur-cluster`) or --no-wheels"
        )
    requirement = args.project
    if requirement is None:
        checkout = Path(murmur.__file__).resolve().parent.parent
        pyproject = checkout / "pyproject.toml"
        if pyproject.exists() and 'name = "murmur-cluster"' in pyproject.read_text():
            requirement = str(checkout)
        else:
            requirement = f"murmur-cluster=={version}"
    return WheelSource(python=sys.executable, requirement=requirement)


def create_command(args: argparse.Namespace) -> int:
    from murmur.bundle import BundleError
    from murmur.bundle.create import create_bundle, read_build
    from murmur.bundle.signing import fingerprint, load_private_key

    try:
        key = load_private_key(args.key)
        onedirs = args.onedir or _default_onedirs()
        version = read_build(onedirs[0]).version
        manifest = create_bundle(
            args.out,
            key=key,
            onedirs=onedirs,
            wheels=_wheel_source(args, version),
            images=args.image,
            progress=lambda line: note(f"murmur: {line}"),
        )
    except BundleError as exc:
        raise CommandError(str(exc)) from None
    size = sum(path.stat().st_size for path in args.out.rglob("*") if path.is_file())
    note(
        f"murmur: bundle of murmur {manifest.version} at {args.out} ({size / 2**20:.0f} MiB): "
        f"{', '.join(manifest.architectures)}, glibc >= {manifest.glibc_floor}, "
        f"{len(manifest.wheels)} wheels, {len(manifest.images)} images; "
        f"signed by {fingerprint(key.public_key())}"
    )
    note(f"murmur: carry it with the public key, then: sh {args.out}/install.sh --key KEY.pub")
    return 0


def verify_command(args: argparse.Namespace) -> int:
    from murmur.bundle import BundleError
    from murmur.bundle.signing import load_public_key
    from murmur.bundle.verify import verify_bundle

    try:
        verified = verify_bundle(args.bundle, load_public_key(args.key))
    except BundleError as exc:
        raise CommandError(f"bundle {args.bundle} does not verify: {exc}") from None
    manifest = verified.manifest
    if args.json:
        print(json.dumps(json.loads(manifest.to_json()), indent=2))
    note(
        f"murmur: bundle {args.bundle} verified: murmur {manifest.version} "
        f"({', '.join(manifest.architectures)}), {verified.files} files, "
        f"signed by {verified.key_fingerprint}"
    )
    return 0
