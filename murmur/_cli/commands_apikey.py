"""API keys for the model router: ``apikey create|list|revoke|usage`` (docs/serving.md).

``create`` prints only the key on stdout (``KEY=$(murmur apikey create --name ci)``),
the one time it is shown; what it is goes to stderr. Nothing else ever prints a key:
listings show its id, which is public.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from murmur._cli.connect import add_connection_flags, add_json_flag, run_with_client
from murmur._cli.output import note, print_json, print_record, print_table
from murmur._cli.parsing import non_negative_int, parse_duration

if TYPE_CHECKING:
    from google.protobuf.timestamp_pb2 import Timestamp

    from murmur import AsyncClient
    from murmur.v1 import apikeys_pb2


def register(commands: Any) -> None:
    apikey = commands.add_parser("apikey", help="API keys for the model router")
    actions = apikey.add_subparsers(dest="apikey_command", metavar="ACTION")
    actions.required = True

    create = actions.add_parser(
        "create",
        help="create a key of yours; prints only the key, this once",
        description="Creates an API key for every node's router (OpenAI API: "
        "'Authorization: Bearer KEY'). The key is printed once, alone on stdout; the "
        "cluster keeps only its hash.",
    )
    create.add_argument("--name", required=True, help="unique among your keys")
    create.add_argument(
        "--models", type=_model_list, default=[], metavar="M1,M2",
        help="the models it may call (an adapter's base model allows its adapters); "
        "default: every model",
    )  # fmt: skip
    create.add_argument(
        "--rpm", type=non_negative_int, default=0,
        help="requests per minute it may send to each node's router (default: no limit)",
    )  # fmt: skip
    create.add_argument(
        "--expires", type=parse_expiry, metavar="T",
        help="when it stops working: a duration from now (30d, 12h) or a UTC time "
        "(2026-12-31T18:00); default: never",
    )  # fmt: skip
    add_connection_flags(create)
    add_json_flag(create)
    create.set_defaults(handler=create_command)

    listing = actions.add_parser("list", help="your keys (an admin: everyone's); no secrets")
    listing.add_argument("--user", default="", help="only this user's keys (admins)")
    add_connection_flags(listing)
    add_json_flag(listing)
    listing.set_defaults(handler=list_command)

    revoke = actions.add_parser("revoke", help="revoke a key: every router refuses it")
    revoke.add_argument(
        "key", metavar="NAME|ID|KEY",
        help="the key's name (yours, or --user's), its id (with --id), or the whole key",
    )  # fmt: skip
    revoke.add_argument("--id", action="store_true", help="KEY is the key's id")
    revoke.add_argument("--user", default="", help="whose key NAME is (admins)")
    add_connection_flags(revoke)
    add_json_flag(revoke)
    revoke.set_defaults(handler=revoke_command)

    usage = actions.add_parser(
        "usage", help="requests and tokens per key (as the routers last flushed them)"
    )
    usage.add_argument("--user", default="", help="only this user's keys (admins)")
    add_connection_flags(usage)
    add_json_flag(usage)
    usage.set_defaults(handler=usage_command)


def _model_list(text: str) -> list[str]:
    models = [model.strip() for model in text.split(",")]
    if not all(models):
        raise argparse.ArgumentTypeError(f"expected model names separated by commas, got {text!r}")
    return models


def parse_expiry(text: str) -> datetime:
    """``30d`` (from now) or an ISO time (UTC unless it says otherwise)."""
    try:
        return datetime.now(UTC) + parse_duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use a duration from now (30d, 12h) or a time "
            "(2026-12-31T18:00)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def create_command(args: argparse.Namespace) -> int:
    answer = run_with_client(
        args,
        lambda client: client.create_api_key(
            args.name, models=args.models, rpm=args.rpm, expires_at=args.expires
        ),
    )
    key = answer.api_key
    note(
        f"created API key {key.name} (id {key.id}) for {key.owner}: it is shown only "
        "now; use it as 'Authorization: Bearer KEY' (the openai package's api_key)"
    )
    print_record(answer, as_json=args.json, text=lambda: print(answer.key))
    return 0


def list_command(args: argparse.Namespace) -> int:
    keys = run_with_client(args, lambda client: client.list_api_keys(owner=args.user))
    if args.json:
        for key in keys:
            print_json(key)
        return 0
    now = datetime.now(UTC)
    print_table(
        ("NAME", "ID", "OWNER", "MODELS", "RPM", "EXPIRES", "STATE"),
        [
            [
                key.name,
                key.id,
                key.owner,
                ",".join(key.models) or "all",
                str(key.rpm or "-"),
                _when(key.expires_at) if key.HasField("expires_at") else "never",
                _state(key, now),
            ]
            for key in keys
        ],
    )
    return 0


def revoke_command(args: argparse.Namespace) -> int:
    whole = args.key.startswith("mur_")
    by_id = args.id or whole

    async def revoke(client: AsyncClient) -> apikeys_pb2.ApiKey:
        if by_id:  # a whole key is sent as its id: the client keeps its secret
            return await client.revoke_api_key(key_id=args.key)
        return await client.revoke_api_key(name=args.key, owner=args.user)

    key = run_with_client(args, revoke)
    note(f"revoked API key {key.name} (id {key.id}) of {key.owner}: every router refuses it")
    print_record(key, as_json=args.json, text=lambda: print(key.id))
    return 0


def usage_command(args: argparse.Namespace) -> int:
    keys = run_with_client(args, lambda client: client.list_api_keys(owner=args.user))
    if args.json:
        for key in keys:
            print_json(key)
        return 0
    print_table(
        ("NAME", "ID", "OWNER", "REQUESTS", "PROMPT TOKENS", "COMPLETION TOKENS", "LAST USED"),
        [
            [
                key.name,
                key.id,
                key.owner,
                str(key.usage.requests),
                str(key.usage.prompt_tokens),
                str(key.usage.completion_tokens),
                _when(key.usage.last_used_at) if key.usage.HasField("last_used_at") else "never",
            ]
            for key in keys
        ],
    )
    return 0


def _when(moment: Timestamp) -> str:
    return moment.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M")


def _state(key: apikeys_pb2.ApiKey, now: datetime) -> str:
    if key.HasField("revoked_at"):
        return f"revoked by {key.revoked_by}" if key.revoked_by else "revoked"
    if key.HasField("expires_at") and key.expires_at.ToDatetime(tzinfo=UTC) <= now:
        return "expired"
    return "active"
