"""Services: ``service create|list|show|scale|delete``: model servers kept running as
replicas, probed ready, and reached through every node's router (docs/serving.md)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from murmur._cli.connect import add_connection_flags, add_json_flag, run_with_client
from murmur._cli.output import note, print_json, print_record, print_table
from murmur._cli.parsing import (
    non_negative_int,
    parse_duration,
    parse_key_value,
    positive_int,
)
from murmur._cli.run_flags import add_run_flags, run_spec

if TYPE_CHECKING:
    from murmur.v1 import types_pb2


def register(commands: Any) -> None:
    service = commands.add_parser(
        "service", help="model servers kept running, reached through every node's router"
    )
    actions = service.add_subparsers(dest="service_command", metavar="ACTION")
    actions.required = True

    create = actions.add_parser(
        "create",
        help="create a service: replicas of CMD, each with a port in $PORT",
        add_help=False,
        usage="murmur service create NAME --model MODEL [options] -- CMD...",
    )
    # NAME comes first and options follow it: argparse cannot put a positional before
    # options and the command after them, so the whole rest is parsed by the handler.
    create.add_argument("-h", "--help", action=_CreateHelp, nargs=0, help=argparse.SUPPRESS)
    create.add_argument("rest", nargs=argparse.REMAINDER)
    create.set_defaults(handler=create_command)

    listing = actions.add_parser("list", help="every service, its replicas ready")
    add_connection_flags(listing)
    add_json_flag(listing)
    listing.set_defaults(handler=list_command)

    show = actions.add_parser("show", help="a service and each of its replicas")
    show.add_argument("name")
    add_connection_flags(show)
    add_json_flag(show)
    show.set_defaults(handler=show_command)

    scale = actions.add_parser("scale", help="set how many replicas a service keeps")
    scale.add_argument("name")
    scale.add_argument("replicas", type=non_negative_int)
    add_connection_flags(scale)
    add_json_flag(scale)
    scale.set_defaults(handler=scale_command)

    delete = actions.add_parser("delete", help="delete a service: its replicas are stopped")
    delete.add_argument("name")
    add_connection_flags(delete)
    add_json_flag(delete)
    delete.set_defaults(handler=delete_command)


class _CreateHelp(argparse.Action):
    """``service create --help``: the help of its own parser (``create_parser``)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        create_parser().print_help()
        parser.exit()


def create_parser() -> argparse.ArgumentParser:
    """``service create``'s own parser: NAME, then options, then ``-- CMD...``."""
    create = argparse.ArgumentParser(
        prog="murmur service create",
        usage="murmur service create NAME --model MODEL [options] -- CMD...",
        description="Each replica runs CMD on a node of the cluster with a port of its "
        "own in $PORT, where it must listen (on every interface). It is ready once an "
        "HTTP GET of --ready-path on that port answers 2xx; only then do the routers "
        "send it requests for --model (and its aliases, and MODEL:ADAPTER). A replica "
        "whose CMD ends runs again (--restart), and the cluster keeps --replicas of them.",
    )
    create.add_argument("name", help="the service's name: lowercase letters, digits, -")
    create.add_argument("--model", required=True, help="the model name requests use")
    create.add_argument("--replicas", type=non_negative_int, default=1)
    create.add_argument("--alias", action="append", default=[], metavar="NAME")
    create.add_argument(
        "--adapter", action="append", type=parse_key_value, default=[], metavar="NAME=PATH",
        help="a LoRA adapter the replicas load, addressed as MODEL:NAME",
    )  # fmt: skip
    create.add_argument("--ready-path", default="", help="readiness probe path (/v1/models)")
    create.add_argument("--ready-period", type=parse_duration, help="between probes (2s)")
    create.add_argument("--ready-timeout", type=parse_duration, help="of one probe (1s)")
    create.add_argument("--ready-delay", type=parse_duration, help="before the first probe")
    create.add_argument(
        "--ready-failures", type=positive_int, default=0,
        help="failures in a row that make a ready replica not ready (3)",
    )  # fmt: skip
    create.add_argument(
        "--restart", choices=("always", "on-failure"), default="always",
        help="run a replica again when CMD ends (always), or only when it failed",
    )  # fmt: skip
    add_run_flags(create)
    add_connection_flags(create)
    add_json_flag(create)
    return create


def service_spec(args: argparse.Namespace) -> types_pb2.ServiceSpec:
    """The spec the flags describe (the node checks it)."""
    from murmur.v1 import types_pb2

    template = run_spec(args, example=f"murmur service create {args.name} -- CMD")
    template.name = args.name
    spec = types_pb2.ServiceSpec(
        name=args.name, template=template, replicas=args.replicas, model=args.model,
        aliases=args.alias, adapters=dict(args.adapter), restart=args.restart,
    )  # fmt: skip
    probe = spec.readiness
    probe.path = args.ready_path
    probe.failure_threshold = args.ready_failures
    for field, value in (
        (probe.period, args.ready_period),
        (probe.timeout, args.ready_timeout),
        (probe.initial_delay, args.ready_delay),
    ):
        if value is not None:
            field.FromTimedelta(value)
    return spec


def create_command(parsed: argparse.Namespace) -> int:
    rest = list(parsed.rest)
    cut = rest.index("--") if "--" in rest else len(rest)
    args = create_parser().parse_args(rest[:cut])
    args.command = rest[cut + 1 :]
    spec = service_spec(args)
    service = run_with_client(args, lambda client: client.create_service(spec))
    note(f"created service {service.spec.name}: {len(service.replicas)} replica(s) placed")
    print_record(service, as_json=args.json, text=lambda: print(service.spec.name))
    return 0


def list_command(args: argparse.Namespace) -> int:
    services = run_with_client(args, lambda client: client.list_services())
    if args.json:
        for service in services:
            print_json(service)
        return 0
    print_table(
        ("NAME", "MODEL", "READY", "USER", "RUNTIME"),
        [
            [
                service.spec.name,
                service.spec.model,
                f"{service.ready}/{service.spec.replicas}",
                service.user,
                "docker" if service.spec.template.image else "process",
            ]
            for service in services
        ],
    )
    return 0


def show_command(args: argparse.Namespace) -> int:
    service = run_with_client(args, lambda client: client.get_service(args.name))
    print_record(service, as_json=args.json, text=lambda: _show(service))
    return 0


def _show(service: types_pb2.Service) -> None:
    from murmur.v1 import types_pb2

    spec = service.spec
    names = [spec.model, *spec.aliases, *(f"{spec.model}:{a}" for a in sorted(spec.adapters))]
    print(f"service {spec.name}: {service.ready}/{spec.replicas} ready, owner {service.user}")
    print(f"models: {', '.join(names)}")
    print(f"readiness: GET {spec.readiness.path}; restart {spec.restart}")
    print_table(
        ("SLOT", "JOB", "STATE", "NODE", "PORT", "READY", "REASON"),
        [
            [
                str(replica.slot),
                replica.job_id,
                types_pb2.JobState.Name(replica.state).removeprefix("JOB_STATE_").lower(),
                replica.node or "-",
                str(replica.port or "-"),
                "yes" if replica.ready else "no",
                replica.reason,
            ]
            for replica in service.replicas
        ],
    )


def scale_command(args: argparse.Namespace) -> int:
    service = run_with_client(args, lambda client: client.scale_service(args.name, args.replicas))
    note(f"service {service.spec.name} keeps {service.spec.replicas} replica(s)")
    print_record(service, as_json=args.json, text=lambda: _show(service))
    return 0


def delete_command(args: argparse.Namespace) -> int:
    service = run_with_client(args, lambda client: client.delete_service(args.name))
    note(f"deleted service {service.spec.name}: its replicas are being stopped")
    print_record(service, as_json=args.json, text=lambda: print(service.spec.name))
    return 0
