"""The one place a node's configuration is defined.

A node is configured from three sources, later ones winning field by field:
a TOML file (``--config FILE``), environment variables (``MURMUR_NODE_<FIELD>``),
and command-line flags. Every field has a default that works for a single
server, so a lab only writes down what differs. Nothing else in the daemon
reads the environment or parses flags: it receives a :class:`NodeConfig`.

Gossip timings are a section of their own (:class:`murmur.node.gossip.GossipConfig`, with
the formulas next to its fields): a ``[gossip]`` table in the file and
``MURMUR_GOSSIP_<FIELD>`` in the environment, no flags. The daemon's defaults are
memberlist's LAN profile (:data:`DAEMON_GOSSIP`) with two changes that suit a
gRPC transport and a cluster that people read: a piggyback budget sized for
gRPC messages, and tombstones of dead nodes kept for an hour so that ``murmur
node list`` keeps showing a dead server until someone removes it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from murmur.node.gossip import GossipConfig, GossipConfigError
from murmur.node.membership.runner import GRPC_PIGGYBACK_BYTES

DEFAULT_PORT = 7070
"""Port of the mTLS API; the join listener defaults to the next port."""

ENV_PREFIX = "MURMUR_NODE_"
GOSSIP_ENV_PREFIX = "MURMUR_GOSSIP_"

DAEMON_GOSSIP = GossipConfig(max_piggyback_bytes=GRPC_PIGGYBACK_BYTES, dead_node_reclaim=3600.0)
"""Gossip settings of a node that sets none."""

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


class ConfigError(ValueError):
    """A configuration value is missing, malformed or contradictory."""


def default_data_dir() -> Path:
    """Where a node keeps its store and identity when no ``--data-dir`` is given."""
    home = os.environ.get("MURMUR_HOME")
    base = Path(home) if home else Path.home() / ".murmur"
    return base / "node"


def default_node_name() -> str:
    """The host name, lowered and trimmed to what a certificate name allows."""
    raw = socket.gethostname().split(".")[0].lower()
    cleaned = re.sub(r"[^a-z0-9._-]", "-", raw).lstrip("._-")[:63]
    return cleaned or "node"


@dataclass(frozen=True)
class HostPort:
    """A ``host:port`` pair, IPv6 hosts written in brackets."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, what: str) -> HostPort:
        text = text.strip()
        match = re.fullmatch(
            r"\[(?P<v6>[0-9a-fA-F:.]+)\]:(?P<p6>\d+)|(?P<h>[^:\s]+):(?P<p>\d+)", text
        )
        if match is None:
            raise ConfigError(f"{what} must look like HOST:PORT, got {text!r}")
        host = match.group("v6") or match.group("h")
        port = int(match.group("p6") or match.group("p"))
        if not 0 < port < 65536:
            raise ConfigError(f"{what}: port {port} is out of range 1-65535")
        return cls(host=host, port=port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def host_of(address: str) -> str:
    """The host of a ``host:port`` address (``[v6]:port`` too), as another node or a
    gang's rank reaches it; an address without a port is its own host."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return address
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to start. Immutable once loaded."""

    name: str | None = None
    """Node name: its certificate CN and how users refer to it. ``None``: the name in
    the node's existing certificate, else the host name."""

    data_dir: Path = field(default_factory=default_data_dir)
    """Holds ``murmur.db`` (the local store), ``identity.pem`` and, on the CA node, ``ca/``."""

    listen: HostPort = HostPort("127.0.0.1", DEFAULT_PORT)
    """Address of the mTLS API (clients and other nodes)."""

    join_listen: HostPort | None = None
    """Address of the join listener (TLS, no client certificate). Default: listen port + 1."""

    advertise: HostPort | None = None
    """Address other nodes and clients should use, when ``listen`` is a wildcard."""

    join: HostPort | None = None
    """Address of an existing node to join, used once to obtain a certificate."""

    router_listen: HostPort | None = None
    """Where this node's OpenAI-compatible router listens (node/router/): off unless
    set. HTTPS with the node's certificate from the lab CA, or plain HTTP on a
    loopback address (``router_tls``)."""

    router_tls: bool | None = None
    """Whether the router speaks HTTPS, presenting the node's certificate (from the
    lab CA, renewed live). ``None`` (the default): HTTPS unless ``router_listen`` is
    a loopback address, where clients on this machine speak plain HTTP. ``false``:
    plain HTTP, refused beyond loopback (API keys and prompts would cross the network
    in the clear). ``true``: HTTPS on loopback too."""

    router_require_keys: bool = False
    """Whether the router refuses a request without an API key (node/router/keys.py).
    A router that listens beyond loopback always does; on loopback it serves
    requests without a key unless this is set (a key a request brings is checked
    either way)."""

    router_usage_flush_seconds: float = 5.0
    """How often the router commits its API keys' usage to the control log."""

    token: str | None = None
    """One-time join token from ``murmur token create``; needed with ``join``."""

    simulate_gpus: str | None = None
    """Declared GPU inventory such as ``8xA100-80GB``, labelled simulated everywhere."""

    simulate_protocol_level: int | None = None
    """TESTING ONLY: behave as an older murmur that speaks this control protocol level
    (node/control/queue/protocol.py), to rehearse a rolling upgrade without two builds.
    The node gossips the level and a version labelled ``+simulated-protocol-N``, and
    stops applying the control log at an entry above it, as that version would. No
    flag; ``MURMUR_NODE_SIMULATE_PROTOCOL_LEVEL`` or the file. None: this version's."""

    labels: Mapping[str, str] = field(default_factory=dict)
    """Free-form node labels, shown in listings and usable by placement later."""

    data_roots: tuple[Path, ...] = ()
    """Directories under which datasets may be registered. Default: ``data_dir/datasets``."""

    job_path_roots: tuple[Path, ...] = ()
    """Where jobs' working dirs, virtualenvs and conda envs may live. Empty: anywhere
    absolute (the process runtime runs code as the daemon's user regardless)."""

    job_accounts: Mapping[str, str] = field(default_factory=dict)
    """Certificate name → Unix account, for users whose account on this node has
    another name (``[node.job_accounts]``; ``alice = "asmith"``). Without an entry
    a user's jobs run as the account of the user's own name."""

    job_fallback_account: str | None = None
    """The account that runs the jobs of users with neither an entry in
    ``job_accounts`` nor an account of their name (a shared ``murmur-jobs``, say).
    None: such jobs are refused with the reason."""

    allow_root_jobs: bool = False
    """Whether a job may run as root here (a user mapped to root, or root as the
    fallback). Off: refused, so that nobody is root on a node by accident. ``murmur
    up`` run by root turns it on for its own demo nodes."""

    docker_host: str | None = None
    """Docker engine for the docker runtime. Default: ``$DOCKER_HOST``, else the default socket."""

    job_network_mode: str = "bridge"
    """Docker network mode of job containers (``none`` isolates them; tests use it)."""

    stop_grace_seconds: float = 10.0
    """After SIGTERM, how long a cancelled or timed-out run has before SIGKILL."""

    retry_backoff_seconds: float = 5.0
    """First wait before a failed job with retries left runs again; doubles each time, up
    to 5 minutes."""

    log_level: str = "info"
    """One of debug, info, warning, error."""

    shutdown_grace_seconds: float = 5.0
    """How long in-flight RPCs may finish after SIGTERM before they are cancelled."""

    telemetry_interval_seconds: float = 2.0
    """How often GPU and host load are sampled."""

    load_gossip_interval_seconds: float = 5.0
    """How often this node's facts, load included, are re-read for gossip; a new
    version goes out when they changed. A drain, or GPUs taken or freed by a run, go
    out within half a second regardless."""

    cert_renew_fraction: float = 2 / 3
    """This node renews its certificate once this fraction of its lifetime has passed
    (node/identity/renewal.py): well before expiry, with time to retry."""

    cert_renew_check_seconds: float = 3600.0
    """How often the node looks at its certificate's age."""

    ca_custody_interval_seconds: float = 5.0
    """How often a voter without the CA key looks for a holder to fetch it from
    (node/identity/ca_custody.py)."""

    ca_passphrase_file: Path | None = None
    """A file whose first line is the passphrase the CA key is encrypted with at rest.
    The passphrase itself is read from ``$MURMUR_CA_PASSPHRASE`` when set, never
    from this configuration (it must not sit in a file next to the key)."""

    join_token_ttl_seconds: int = 3600
    """Lifetime of a join token when ``murmur token create`` gives none."""

    node_certificate_days: int = 365
    """Validity of node certificates this node signs (CA node only)."""

    user_certificate_days: int = 90
    """Validity of user certificates this node signs (CA node only)."""

    voter_stabilization_seconds: float = 10.0
    """How long a node must have been alive before the leader makes it a Raft voter,
    and a voter dead before the leader replaces it (node/control/consensus/voter_policy.py)."""

    max_voters: int = 5
    """Most Raft voters the leader keeps: 1, 3 or 5 (odd; 5 tolerates two failures)."""

    raft_snapshot_entries: int = 10_000
    """Compact the Raft log into a snapshot of the job queue every this many applied
    entries: a restart replays at most this many, and a voter that fell further
    behind receives the snapshot instead of the entries."""

    job_retention_seconds: float = 7 * 86400.0
    """How long the job queue keeps a job after it ended (default 7 days; ``"7d"``,
    ``"12h"``, ``"30m"`` or seconds; 0 keeps every job). Older ones are forgotten by
    the leader (a ``ForgetJobs`` command) and kept in each voter's archive, where
    ``murmur job show`` and ``job list --all`` still find them. The leader's setting
    applies: give every voter the same."""

    run_lease_seconds: float = 30.0
    """How long a node keeps its runs going without word from a leader. A node cut
    off longer stops them (recorded lost), and only then may the leader run those
    jobs elsewhere: a job never runs twice at once. Longer rides out longer network
    trouble; shorter re-places a dead node's jobs sooner."""

    run_start_timeout_seconds: float = 600.0
    """How long a run may stay scheduled or starting (an image pull included) before
    the leader gives it up: its node stops it and records it lost, and the job
    retries as its policy says. A run its node never received is sent again well
    before that."""

    default_job_cpus: float = 1.0
    """CPUs a job that names none counts as when the leader places it (per rank), so
    that such jobs fill a node by what they use rather than all land on one. It
    weighs in placement only: the job runs without a CPU limit, as it asked. 0 counts
    such a job as using none. The leader's setting applies: give every voter the same."""

    default_job_memory_bytes: int = 2 * 1024**3
    """Memory a job that names none counts as when the leader places it (per rank;
    default 2 GiB; bytes, or a size such as ``"2GiB"`` or ``"512MiB"``). Like
    ``default_job_cpus``, placement only: no memory limit is set. 0 counts none."""

    seeds: tuple[HostPort, ...] = ()
    """API addresses of other nodes to join gossip through, besides the node that
    signed this node's certificate and the peers remembered from earlier runs."""

    gossip: GossipConfig = DAEMON_GOSSIP
    """Gossip membership timings (the ``[gossip]`` section)."""

    def __post_init__(self) -> None:
        if self.name is not None and not _NAME_RE.fullmatch(self.name):
            raise ConfigError(
                f"node name {self.name!r} is invalid: use lowercase letters, digits, '.', '_' "
                "or '-', starting with a letter or digit, at most 63 characters"
            )
        if self.log_level not in {"debug", "info", "warning", "error"}:
            raise ConfigError(
                f"log_level must be debug, info, warning or error, got {self.log_level!r}"
            )
        if (self.join is None) != (self.token is None):
            raise ConfigError("--join and --token go together: pass both to join a cluster")
        if (
            self.router_tls is False
            and self.router_listen is not None
            and not _is_loopback(self.router_listen.host)
        ):
            raise ConfigError(
                f"router_listen {self.router_listen} is not a loopback address: plain HTTP "
                "(router_tls = false) would carry API keys and prompts across the network "
                "in the clear; drop router_tls to serve HTTPS with the node's certificate, "
                "or listen on 127.0.0.1"
            )
        for name in (
            "shutdown_grace_seconds",
            "telemetry_interval_seconds",
            "load_gossip_interval_seconds",
            "stop_grace_seconds",
            "retry_backoff_seconds",
            "voter_stabilization_seconds",
            "run_lease_seconds",
            "run_start_timeout_seconds",
            "cert_renew_check_seconds",
            "ca_custody_interval_seconds",
            "router_usage_flush_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        if not 0 < self.cert_renew_fraction < 1:
            raise ConfigError("cert_renew_fraction must be between 0 and 1 (e.g. 0.67)")
        if not self.job_retention_seconds >= 0:
            raise ConfigError("job_retention_seconds must be 0 (keep every job) or positive")
        if self.raft_snapshot_entries < 1:
            raise ConfigError("raft_snapshot_entries must be a positive integer")
        if self.max_voters not in (1, 3, 5, 7):
            raise ConfigError(f"max_voters must be 1, 3, 5 or 7, got {self.max_voters}")
        for name in ("join_token_ttl_seconds", "node_certificate_days", "user_certificate_days"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive integer")
        if self.simulate_protocol_level is not None and self.simulate_protocol_level < 1:
            raise ConfigError("simulate_protocol_level must be a protocol level: 1 or more")
        if not (math.isfinite(self.default_job_cpus) and 0 <= self.default_job_cpus <= 4096):
            raise ConfigError(
                f"default_job_cpus must be between 0 and 4096, got {self.default_job_cpus}"
            )
        if not 0 <= self.default_job_memory_bytes <= 2**50:
            raise ConfigError(
                "default_job_memory_bytes must be between 0 and 1 PiB, "
                f"got {self.default_job_memory_bytes}"
            )

    @property
    def effective_join_listen(self) -> HostPort:
        if self.join_listen is not None:
            return self.join_listen
        return HostPort(self.listen.host, self.listen.port + 1)

    @property
    def advertise_address(self) -> HostPort:
        """The address peers and clients dial: ``advertise``, else ``listen``."""
        return self.advertise or self.listen

    @property
    def advertise_join_address(self) -> HostPort:
        return HostPort(self.advertise_address.host, self.effective_join_listen.port)

    @property
    def effective_data_roots(self) -> tuple[Path, ...]:
        return self.data_roots or (self.data_dir / "datasets",)

    @property
    def router_https(self) -> bool:
        """Whether the router speaks HTTPS (``router_tls``; by default beyond loopback)."""
        if self.router_tls is not None:
            return self.router_tls
        return self.router_listen is not None and not _is_loopback(self.router_listen.host)

    @property
    def router_requires_keys(self) -> bool:
        """Whether the router refuses requests without an API key: beyond loopback
        always, on loopback when ``router_require_keys`` says so."""
        listen = self.router_listen
        return self.router_require_keys or (listen is not None and not _is_loopback(listen.host))

    @property
    def runs_dir(self) -> Path:
        """One directory per run: its launch file, log segments and exit record."""
        return self.data_dir / "runs"

    @property
    def scratch_dir(self) -> Path:
        """Runs without a working dir get one here, owned by their account."""
        return self.data_dir / "work"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "murmur.db"

    @property
    def identity_path(self) -> Path:
        return self.data_dir / "identity.pem"

    @property
    def ca_dir(self) -> Path:
        return self.data_dir / "ca"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_FIELDS = {f.name: f for f in dataclasses.fields(NodeConfig)}


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turns a raw TOML/env/flag value into the field's type, or says what is wrong."""
    what = f"{name} (from {source})"
    try:
        if name in {"listen", "join_listen", "advertise", "join", "router_listen"}:
            return HostPort.parse(str(value), what=what)
        if name == "seeds":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(HostPort.parse(str(i), what=what) for i in items if str(i).strip())
        if name in {"data_dir", "ca_passphrase_file"}:
            return Path(str(value)).expanduser()
        if name in {"data_roots", "job_path_roots"}:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(Path(str(item)).expanduser() for item in items if str(item))
        if name == "labels":
            if isinstance(value, Mapping):
                return {str(k): str(v) for k, v in value.items()}
            pairs = [p for p in str(value).split(",") if p] if isinstance(value, str) else value
            labels: dict[str, str] = {}
            for pair in pairs:
                key, sep, val = str(pair).partition("=")
                if not sep or not key:
                    raise ConfigError(f"{what}: label {pair!r} must look like KEY=VALUE")
                labels[key] = val
            return labels
        if name == "job_accounts":
            return _account_table(value, what)
        if name == "job_fallback_account":
            return str(value) or None  # "" (an env var or flag set empty): none
        if name in {"allow_root_jobs", "router_require_keys", "router_tls"}:
            return _boolean(value, what)
        if name == "job_retention_seconds":
            return _duration_seconds(value, what)
        if name == "default_job_memory_bytes":
            return _size_bytes(value, what)
        if name in {
            "shutdown_grace_seconds",
            "telemetry_interval_seconds",
            "load_gossip_interval_seconds",
            "stop_grace_seconds",
            "retry_backoff_seconds",
            "voter_stabilization_seconds",
            "run_lease_seconds",
            "run_start_timeout_seconds",
            "default_job_cpus",
            "cert_renew_fraction",
            "cert_renew_check_seconds",
            "ca_custody_interval_seconds",
            "router_usage_flush_seconds",
        }:
            if isinstance(value, bool):
                raise ConfigError(f"{what} must be a number, got {value!r}")
            return float(value)
        if name in {
            "join_token_ttl_seconds",
            "node_certificate_days",
            "user_certificate_days",
            "max_voters",
            "raft_snapshot_entries",
            "simulate_protocol_level",
        }:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ConfigError(f"{what} must be an integer, got {value!r}")
            return int(value)
        if not isinstance(value, str):
            raise ConfigError(f"{what} must be a string, got {value!r}")
        return value
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{what}: {exc}") from None


def _account_table(value: Any, what: str) -> dict[str, str]:
    """``{name: account}`` from a TOML table or ``NAME=ACCOUNT,...`` text."""
    if isinstance(value, Mapping):
        pairs = [(str(k), str(v)) for k, v in value.items()]
    else:
        pairs = []
        for item in str(value).split(","):
            if item.strip():
                key, sep, account = item.strip().partition("=")
                if not sep:
                    raise ConfigError(f"{what}: {item!r} must look like NAME=ACCOUNT")
                pairs.append((key, account))
    for key, account in pairs:
        if not key or not account:
            raise ConfigError(f"{what}: {key}={account} needs a name and an account")
    return dict(pairs)


def _boolean(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "1", "yes", "false", "0", "no"}:
        return value.lower() in {"true", "1", "yes"}
    raise ConfigError(f"{what} must be true or false, got {value!r}")


_SIZE_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
    "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4,
    "tib": 1024**4,
}  # fmt: skip
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


def _size_bytes(value: Any, what: str) -> int:
    """Bytes of an integer or of a size such as ``"2GiB"``, ``"512MiB"``, ``"4G"``."""
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"{what} must be a whole number of bytes or a size, got {value!r}")
    if isinstance(value, int | float):
        return int(value)
    match = _SIZE_RE.match(str(value).lower())
    unit = _SIZE_UNITS.get(match.group(2)) if match else None
    if match is None or unit is None:
        raise ConfigError(f"{what} must be bytes or a size such as 2GiB, got {value!r}")
    return int(float(match.group(1)) * unit)


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration_seconds(value: Any, what: str) -> float:
    """Seconds of a number or of a duration such as ``"7d"``, ``"12h"``, ``"90s"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a duration such as 7d, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip().lower()
    unit = _DURATION_UNITS.get(text[-1:])
    try:
        return float(text[:-1]) * unit if unit is not None else float(text)
    except ValueError:
        raise ConfigError(
            f"{what} must be a duration such as 7d, 12h, 30m or 90s, got {value!r}"
        ) from None


def _read_toml(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``[node]`` settings (or the file's top level when it has no such table)
    and the ``[gossip]`` table of a config file."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    gossip = data.pop("gossip", {})
    if not isinstance(gossip, dict):
        raise ConfigError(f"config file {path}: [gossip] must be a table")
    router = data.pop("router", {})
    if not isinstance(router, dict):
        raise ConfigError(f"config file {path}: [router] must be a table")
    if "node" not in data:
        return _with_router(data, router, path), gossip
    section = data["node"]
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path}: [node] must be a table")
    stray = sorted(set(data) - {"node"})
    if stray:
        raise ConfigError(
            f"config file {path}: settings outside [node], [router] and [gossip] "
            f"({', '.join(stray)}); put every node setting in the [node] table or none"
        )
    return _with_router(section, router, path), gossip


def _with_router(node: dict[str, Any], router: dict[str, Any], path: Path) -> dict[str, Any]:
    """The node settings with the ``[router]`` table's folded in: ``[router] listen``
    is ``router_listen``, and so on (the table reads better in a file; the flat names
    are what flags and ``MURMUR_NODE_ROUTER_*`` say)."""
    merged = dict(node)
    for key, value in router.items():
        name = f"router_{key}"
        if name in node:
            raise ConfigError(
                f"config file {path}: the router's {key} is set twice, as [router] {key} "
                f"and as {name}; keep one"
            )
        merged[name] = value
    return merged


_GOSSIP_FIELDS = {f.name: f for f in dataclasses.fields(GossipConfig)}


def _coerce_gossip(name: str, value: Any, source: str) -> float | int | bool:
    """A raw ``[gossip]`` value as its GossipConfig field's type."""
    kind = _GOSSIP_FIELDS[name].type
    what = f"gossip {name} (from {source})"
    if kind == "bool":
        return _boolean(value, what)
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if kind == "int":
        if not number.is_integer():
            raise ConfigError(f"{what} must be an integer, got {value!r}")
        return int(number)
    return number


def _gossip_config(
    file_values: Mapping[str, Any], file_source: str, env: Mapping[str, str]
) -> GossipConfig:
    """:data:`DAEMON_GOSSIP` < the file's ``[gossip]`` < ``MURMUR_GOSSIP_<FIELD>``."""
    values: dict[str, Any] = {}
    sources = [(key, raw, file_source) for key, raw in file_values.items()]
    sources += [
        (key[len(GOSSIP_ENV_PREFIX) :].lower(), raw, f"${key}")
        for key, raw in env.items()
        if key.startswith(GOSSIP_ENV_PREFIX)
    ]
    for key, raw, source in sources:
        if key not in _GOSSIP_FIELDS:
            raise ConfigError(f"{source}: unknown gossip setting {key!r}")
        values[key] = _coerce_gossip(key, raw, source)
    try:
        return dataclasses.replace(DAEMON_GOSSIP, **values)
    except GossipConfigError as exc:
        raise ConfigError(str(exc)) from None


def load_node_config(
    *,
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> NodeConfig:
    """Builds the node configuration: defaults < TOML file < environment < flags.

    Flags whose value is ``None`` count as not given. Unknown keys in the file or
    environment are errors rather than silently ignored: a typo in a config file
    should never quietly change nothing.

    Raises:
        ConfigError: with a one-line message naming the field and the source.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    gossip_file: dict[str, Any] = {}
    if config_file is not None:
        node_file, gossip_file = _read_toml(config_file)
        for key, raw in node_file.items():
            if key not in _FIELDS or key == "gossip":
                raise ConfigError(f"config file {config_file}: unknown setting {key!r}")
            values[key] = _coerce(key, raw, f"config file {config_file}")
    for env_key, raw in env.items():
        if not env_key.startswith(ENV_PREFIX):
            continue
        key = env_key[len(ENV_PREFIX) :].lower()
        if key not in _FIELDS or key == "gossip":
            raise ConfigError(f"environment variable {env_key} is not a node setting")
        values[key] = _coerce(key, raw, f"${env_key}")
    for key, raw in (flags or {}).items():
        if raw is None:
            continue
        if key not in _FIELDS:
            raise ConfigError(f"unknown node setting {key!r}")
        if key == "gossip" and isinstance(raw, GossipConfig):
            values[key] = raw
            continue
        values[key] = _coerce(key, raw, f"--{key.replace('_', '-')}")
    if "gossip" not in values:
        values["gossip"] = _gossip_config(gossip_file, f"config file {config_file}", env)
    try:
        return NodeConfig(**values)
    except TypeError as exc:  # a wrongly typed value that slipped through coercion
        raise ConfigError(str(exc)) from None
