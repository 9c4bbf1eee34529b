"""Services: ``service create|list|show|scale|update|delete``: model servers kept
running as replicas, probed ready, and reached through every node's router
(docs/serving.md)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
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
    from datetime import timedelta

    from murmur._client import AsyncClient
    from murmur.v1 import types_pb2


def register(commands: Any) -> None:
    service = commands.add_parser(
        "service", help="model servers kept running, reached through every node's router"
    )
    actions = service.add_subparsers(dest="service_command", metavar="ACTION")
    actions.required = True

    _add_spec_action(
        actions, "create", create_parser, create_command,
        help="create a service: replicas of CMD, each with a port in $PORT",
        usage="murmur service create NAME --model MODEL [options] -- CMD...",
    )  # fmt: skip
    _add_spec_action(
        actions, "update", update_parser, update_command,
        help="give a service a new spec: its replicas are replaced one at a time",
        usage="murmur service update NAME [options] -- CMD...",
    )  # fmt: skip

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

    logs = actions.add_parser(
        "logs", help="its replicas' output, each line behind its slot (one with --replica)"
    )
    logs.add_argument("name")
    logs.add_argument("--replica", type=non_negative_int, help="only this slot's replica")
    logs.add_argument("-f", "--follow", action="store_true", help="stream until they end")
    logs.add_argument("-t", "--timestamps", action="store_true")
    logs.add_argument("--tail", type=positive_int, help="only the last N lines of each")
    add_connection_flags(logs)
    logs.set_defaults(handler=logs_command)

    delete = actions.add_parser("delete", help="delete a service: its replicas are stopped")
    delete.add_argument("name")
    add_connection_flags(delete)
    add_json_flag(delete)
    delete.set_defaults(handler=delete_command)


def _add_spec_action(
    actions: Any,
    name: str,
    own_parser: Callable[[], argparse.ArgumentParser],
    handler: Callable[[argparse.Namespace], int],
    *,
    help: str,
    usage: str,
) -> None:
    """``service create`` or ``update``: NAME comes first and options follow it, which
    argparse cannot do with the command after them, so the action takes the whole
    rest and its handler parses it with ``own_parser`` (whose help ``--help`` shows)."""

    class OwnHelp(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
            own_parser().print_help()
            parser.exit()

    action = actions.add_parser(name, help=help, add_help=False, usage=usage)
    action.add_argument("-h", "--help", action=OwnHelp, nargs=0, help=argparse.SUPPRESS)
    action.add_argument("rest", nargs=argparse.REMAINDER)
    action.set_defaults(handler=handler)


_SPEC_HELP = (
    "Each replica runs CMD on a node of the cluster with a port of its own in $PORT, "
    "where it must listen (on every interface). It is ready once an HTTP GET of "
    "--ready-path on that port answers 2xx; only then do the routers send it requests "
    "for --model (and its aliases, and MODEL:ADAPTER). A replica whose CMD ends runs "
    "again (--restart), and the cluster keeps --replicas of them."
)


def create_parser() -> argparse.ArgumentParser:
    """``service create``'s own parser: NAME, then options, then ``-- CMD...``."""
    create = argparse.ArgumentParser(
        prog="murmur service create",
        usage="murmur service create NAME --model MODEL [options] -- CMD...",
        description=_SPEC_HELP,
    )
    create.add_argument("name", help="the service's name: lowercase letters, digits, -")
    create.add_argument("--model", required=True, help="the model name requests use")
    create.add_argument("--replicas", type=non_negative_int, default=1)
    _add_spec_flags(create)
    return create


def update_parser() -> argparse.ArgumentParser:
    """``service update``'s own parser: create's, but the model and the replica count
    default to the service's current ones."""
    update = argparse.ArgumentParser(
        prog="murmur service update",
        usage="murmur service update NAME [options] -- CMD...",
        description="The new spec is the whole spec, as `service create` takes it: an "
        "option not given takes its default, not the service's current value (but "
        "--model and --replicas, which keep theirs). The replicas are then replaced one "
        "at a time, a new one ready before the next old one stops, so no fewer than "
        "N-1 are ready at any moment; a new revision that never gets ready stops the "
        "update with the others still serving. " + _SPEC_HELP,
    )
    update.add_argument("name", help="the service to update")
    update.add_argument("--model", help="the model name requests use (default: kept)")
    update.add_argument("--replicas", type=non_negative_int, help="(default: kept)")
    _add_spec_flags(update)
    return update


def _add_spec_flags(create: argparse.ArgumentParser) -> None:
    """The flags of a service's spec that create and update share."""
    create.add_argument("--alias", action="append", default=[], metavar="NAME")
    create.add_argument(
        "--adapter", action="append", type=parse_key_value, default=[], metavar="NAME=PATH",
        help="a LoRA adapter the replicas load, addressed as MODEL:NAME",
    )  # fmt: skip
    create.add_argument(
        "--port-name", default="", metavar="NAME",
        help="the port's name: the replica finds its port in $PORT and $PORT_<NAME> (http)",
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
        "--live-path", default="",
        help="a liveness probe path: a replica failing it --live-failures times in a row "
        "is stopped and restarts (none unless a --live-* option is given)",
    )  # fmt: skip
    create.add_argument("--live-period", type=parse_duration, help="between probes (2s)")
    create.add_argument("--live-timeout", type=parse_duration, help="of one probe (1s)")
    create.add_argument("--live-delay", type=parse_duration, help="before the first probe")
    create.add_argument(
        "--live-failures", type=positive_int, default=0,
        help="failures in a row that make a replica restart (3)",
    )  # fmt: skip
    create.add_argument(
        "--restart", choices=("always", "on-failure"), default="always",
        help="run a replica again when CMD ends (always), or only when it failed",
    )  # fmt: skip
    add_run_flags(create)
    add_connection_flags(create)
    add_json_flag(create)


def service_spec(args: argparse.Namespace) -> types_pb2.ServiceSpec:
    """The spec the flags describe (the node checks it)."""
    from murmur.v1 import types_pb2

    template = run_spec(args, example=f"murmur service create {args.name} -- CMD")
    template.name = args.name
    spec = types_pb2.ServiceSpec(
        name=args.name, template=template, replicas=args.replicas, model=args.model,
        aliases=args.alias, adapters=dict(args.adapter), restart=args.restart,
        port_name=args.port_name,
    )  # fmt: skip
    _set_probe(
        spec.readiness, args.ready_path, args.ready_failures,
        (args.ready_period, args.ready_timeout, args.ready_delay),
    )  # fmt: skip
    live = (args.live_period, args.live_timeout, args.live_delay)
    if args.live_path or args.live_failures or any(value is not None for value in live):
        _set_probe(spec.liveness, args.live_path, args.live_failures, live)
    return spec


def _set_probe(
    probe: types_pb2.HttpProbe,
    path: str,
    failures: int,
    times: tuple[timedelta | None, timedelta | None, timedelta | None],
) -> None:
    """``probe`` as flags give it: path, failure threshold, (period, timeout, delay);
    what is not given is the node's default."""
    probe.path = path
    probe.failure_threshold = failures
    probe.SetInParent()
    for field, value in zip((probe.period, probe.timeout, probe.initial_delay), times, strict=True):
        if value is not None:
            field.FromTimedelta(value)


def _parsed(parser: argparse.ArgumentParser, rest: list[str]) -> argparse.Namespace:
    """NAME and options from ``parser``, then the command after ``--``."""
    cut = rest.index("--") if "--" in rest else len(rest)
    args = parser.parse_args(rest[:cut])
    args.command = rest[cut + 1 :]
    return args


def create_command(parsed: argparse.Namespace) -> int:
    args = _parsed(create_parser(), list(parsed.rest))
    spec = service_spec(args)
    service = run_with_client(args, lambda client: client.create_service(spec))
    note(f"created service {service.spec.name}: {len(service.replicas)} replica(s) placed")
    print_record(service, as_json=args.json, text=lambda: print(service.spec.name))
    return 0


def update_command(parsed: argparse.Namespace) -> int:
    args = _parsed(update_parser(), list(parsed.rest))
    replicas = args.replicas
    args.replicas = replicas or 0  # 0: the node keeps the count

    async def update(client: AsyncClient) -> types_pb2.Service:
        if args.model is None:
            args.model = (await client.get_service(args.name)).spec.model
        return await client.update_service(service_spec(args))

    service = run_with_client(args, update)
    note(
        f"service {service.spec.name} is at revision {service.revision}: its replicas are "
        "replaced one at a time (`murmur service show` follows it)"
    )
    print_record(service, as_json=args.json, text=lambda: _show(service))
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
    revision = service.revision or 1
    old = sum(1 for replica in service.replicas if (replica.revision or 1) < revision)
    rolling = f" ({old} replica(s) of older revisions left to replace)" if old else ""
    print(f"revision: {revision}{rolling}")
    print(f"models: {', '.join(names)}")
    print(f"readiness: GET {spec.readiness.path}; restart {spec.restart}")
    port = spec.port_name or "http"
    print(f"port: $PORT and $PORT_{port.upper()} on each replica's node")
    if spec.HasField("liveness"):
        live = spec.liveness
        print(f"liveness: GET {live.path}; restart after {live.failure_threshold} failures")
    print_table(
        ("SLOT", "REV", "JOB", "STATE", "NODE", "PORT", "READY", "REASON"),
        [
            [
                str(replica.slot),
                str(replica.revision or 1),
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


def logs_command(args: argparse.Namespace) -> int:
    """Each replica's latest run's output; with several replicas, every line behind
    ``[SLOT]`` and, with ``--follow``, the replicas streamed side by side (a line is
    never cut by another's)."""
    import asyncio

    from murmur._cli.log_output import print_log_line
    from murmur._errors import NotFound

    async def stream(client: AsyncClient) -> None:
        service = await client.get_service(args.name)
        replicas = list(service.replicas)
        if args.replica is not None:
            replicas = [r for r in replicas if r.slot == args.replica]
            if not replicas:
                raise NotFound(f"service {args.name} has no replica {args.replica}")
        several = len(replicas) > 1

        async def one(replica: types_pb2.ServiceReplica) -> None:
            prefix = f"[{replica.slot}] " if several else ""
            async for line in client.stream_logs(
                replica.job_id, follow=args.follow, tail_lines=args.tail or 0
            ):
                print_log_line(line, timestamps=args.timestamps, flush=args.follow, prefix=prefix)

        if args.follow:
            await asyncio.gather(*(one(replica) for replica in replicas))
        else:
            for replica in replicas:
                await one(replica)

    run_with_client(args, stream)
    return 0


def delete_command(args: argparse.Namespace) -> int:
    service = run_with_client(args, lambda client: client.delete_service(args.name))
    note(f"deleted service {service.spec.name}: its replicas are being stopped")
    print_record(service, as_json=args.json, text=lambda: print(service.spec.name))
    return 0
