"""Router benchmark (issue 15): OpenAI API requests direct to a replica, through the
router of the replica's node, and through another node's router, side by side; then
the time from a replica's node being killed to the last request that failed.

``python -m tests.bench.bench_router [--seconds S] [--rounds R] [--quick]``.

A real 3-node cluster on 127.0.0.2-4, every node with its router and one simulated
GPU. Throughput and latency: a one-replica service per replica server, loaded with
non-streamed chat completions and streamed ones (``--events`` server-sent events each,
timed to the first event and to the end) by ``--clients`` concurrent clients for
``--seconds``, then by one client for a third of that (the added latency of an idle
router), from one aiohttp session on uvloop in this process. Four paths, in turn within
each of ``--rounds`` rounds so that the machine's other load falls on all alike:
direct, ``ModelRouter`` alone in its own process (tests/bench/floor_router.py, the
floor), the local router, a remote router. Besides what the clients saw, the CPU time
the router's process, the replica and the clients spent per request (/proc: steadier
than throughput on a shared machine, and on two cores what bounds it). Two replica
servers: tests/support/openai_server.py (http.server, a thread per connection, what
the service tests run) and tests/bench/router_replica.py (aiohttp, as vLLM and SGLang
serve), because the first one's ceiling would hide the router's cost.

Node loss: a two-replica service (one GPU each, so on two nodes), ``LOSS_CLIENTS``
clients sending continuously through the third node's router; the daemon of a
replica's node and the replica are killed with SIGKILL. Times are from the kill to the
end of the last failed request, to the third node's ``membership.dead`` line, and to
its router's last try of the dead replica (``router.upstream_failed``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp
import uvloop

from murmur import AsyncClient
from murmur.node.agent.runtimes.run_files import CHILD_FILE, read_json
from murmur.v1 import types_pb2
from tests.bench import router_replica
from tests.bench.run import percentile
from tests.node.control.consensus.test_consensus_processes import FAST_VOTERS, wait_agreed
from tests.support import openai_server
from tests.support.cluster import client_for, eventually, host_of, start_cluster
from tests.support.nodes import Lab, NodeProcess, create_lab, free_port
from tests.support.run_processes import kill_everything_under

NODES = 3
PATHS = ("direct", "router alone", "local router", "remote router")
"""Direct to the replica; through ``ModelRouter`` alone in its own process over a fixed
table (tests/bench/floor_router.py: the floor); through the router of the replica's
node; through another node's router."""
MODES = ("whole", "streamed")
REPLICA_SERVERS = {
    "aiohttp": router_replica.__file__,
    "http.server": openai_server.__file__,
}
"""Replica server name → its script (run with this interpreter)."""
JSON = {"Content-Type": "application/json"}
LOSS_CLIENTS = 8
"""Clients sending through the third node's router while a replica's node dies: half
of them streamed (64 events 1 ms apart), half whole answers."""
LOSS_PAUSE_SECONDS = 0.005
"""Between one client's requests: continuous, without saturating the two cores the
membership's detection also runs on."""


# -- load ------------------------------------------------------------------------------


@dataclass
class Figures:
    """What the clients saw on one path, in one mode, at one concurrency, over every
    round; and the CPU the router's daemon and the replica spent meanwhile."""

    seconds: float = 0.0
    completed: int = 0
    failed: int = 0
    latency: list[float] = field(default_factory=list)
    first_event: list[float] = field(default_factory=list)
    sent: int = 0
    """Requests answered, the warm-ups' too (what the CPU figures are spent on)."""
    router_cpu: float = 0.0
    replica_cpu: float = 0.0
    client_cpu: float = 0.0
    """This process's (the clients, mostly)."""

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far; 0 for none (pid 0)."""
    if not pid:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def chat_body(model: str, *, stream: bool) -> bytes:
    messages = [{"role": "user", "content": "hi"}]
    return json.dumps({"model": model, "messages": messages, "stream": stream}).encode()


async def one_request(
    session: aiohttp.ClientSession, url: str, body: bytes, events: int, stream: bool
) -> tuple[bool, float]:
    """Sends one chat completion; (whether a whole, right answer came, the time its
    first bytes came)."""
    async with session.post(url, data=body, headers=JSON) as answer:
        if not stream:
            data = await answer.read()
            return answer.status == 200 and b'"choices"' in data, time.perf_counter()
        first = 0.0
        parts = []
        async for chunk in answer.content.iter_any():
            if not first:
                first = time.perf_counter()
            parts.append(chunk)
        data = b"".join(parts)
        whole = data.count(b"data: ") == events + 1 and data.endswith(b"data: [DONE]\n\n")
        return answer.status == 200 and whole, first


async def drive(
    url: str,
    body: bytes,
    figures: Figures,
    *,
    stream: bool,
    clients: int,
    events: int,
    seconds: float,
    warmup: float = 0.3,
    router_pid: int = 0,
    replica_pid: int = 0,
) -> None:
    """``clients`` clients send requests one after another for ``warmup + seconds``;
    the requests that start after the warm-up count (a failure as one, not timed)."""
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=30)
    cpu_before = cpu_seconds(router_pid), cpu_seconds(replica_pid), time.process_time()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        begin = time.perf_counter() + warmup
        end = begin + seconds

        async def client() -> None:
            while (started := time.perf_counter()) < end:
                try:
                    ok, first = await one_request(session, url, body, events, stream)
                except (aiohttp.ClientError, TimeoutError):
                    ok, first = False, 0.0
                finished = time.perf_counter()
                figures.sent += ok
                if started < begin:
                    continue
                if not ok:
                    figures.failed += 1
                    continue
                figures.completed += 1
                figures.latency.append(finished - started)
                if stream:
                    figures.first_event.append(first - started)

        await asyncio.gather(*(client() for _ in range(clients)))
        figures.seconds += time.perf_counter() - begin
    figures.router_cpu += cpu_seconds(router_pid) - cpu_before[0]
    figures.replica_cpu += cpu_seconds(replica_pid) - cpu_before[1]
    figures.client_cpu += time.process_time() - cpu_before[2]


# -- the cluster -----------------------------------------------------------------------


def replica_spec(
    name: str, script: str, *, replicas: int, gpus: int, events: int, gap: float
) -> types_pb2.ServiceSpec:
    command = [
        sys.executable, script, "--model", name,
        "--events", str(events), "--event-gap", str(gap),
    ]  # fmt: skip
    if script == openai_server.__file__:
        command.insert(1, "-S")  # the standard library only, as the service tests run it
    spec = types_pb2.ServiceSpec(
        name=name,
        template=types_pb2.JobSpec(
            runtime=types_pb2.JOB_RUNTIME_PROCESS,
            command=command,
            gpus=types_pb2.GpuRequest(count=gpus),
        ),
        replicas=replicas,
        model=name,
    )
    spec.readiness.period.FromMilliseconds(200)
    return spec


async def ready_service(client: AsyncClient, spec: types_pb2.ServiceSpec) -> types_pb2.Service:
    await client.create_service(spec, timeout=10)
    return await eventually(
        lambda: client.get_service(spec.name, timeout=10),
        lambda found: found.ready == spec.replicas,
        within=40,
        what=f"{spec.name}: {spec.replicas} replicas ready",
    )


def index_of(node_name: str) -> int:
    return int(node_name.rsplit("-", 1)[1])


async def routed_everywhere(routers: dict[int, str], model: str) -> None:
    """Waits until every router lists ``model`` (its replica's readiness has been
    gossiped to every node)."""
    async with aiohttp.ClientSession() as session:

        async def listed() -> bool:
            for router in routers.values():
                async with session.get(f"http://{router}/v1/models") as answer:
                    names = [entry["id"] for entry in (await answer.json())["data"]]
                if model not in names:
                    return False
            return True

        await eventually(listed, bool, within=20, what=f"{model} listed by every router")


# -- throughput and latency ------------------------------------------------------------


class FloorRouter:
    """tests/bench/floor_router.py in its own process, started before this process
    opens a gRPC channel (a fork then would copy its threads' state)."""

    def __init__(self) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.floor_router", self.address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._expect(b"ready")

    def route_to(self, replica: str, model: str) -> None:
        """Makes ``replica`` (host:port), serving ``model``, its only replica."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{replica} {model}\n".encode())
        self.process.stdin.flush()
        self._expect(b"routing")

    def _expect(self, word: bytes) -> None:
        assert self.process.stdout is not None
        said = self.process.stdout.readline().strip()
        if said != word:
            raise RuntimeError(f"the floor router said {said!r}, not {word!r}")

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


Key = tuple[int, str, str]
"""(concurrent clients, answer kind, path)."""


def replica_pid(node: NodeProcess, model: str) -> int:
    """The process of the replica of ``model`` on ``node`` (its run's child)."""
    for run_dir in (node.data_dir / "runs").iterdir():
        child = read_json(run_dir / CHILD_FILE)
        if child is None:
            continue
        command = Path(f"/proc/{child['pid']}/cmdline")
        if command.exists() and model.encode() in command.read_bytes():
            return int(child["pid"])
    raise RuntimeError(f"no replica of {model} runs on {node.name}")


async def paths_side_by_side(
    client: AsyncClient,
    floor: FloorRouter,
    nodes: list[NodeProcess],
    routers: dict[int, str],
    server: str,
    args: argparse.Namespace,
) -> dict[Key, Figures]:
    """The figures of each path, answer kind and concurrency, for one replica server."""
    name = f"bench-{server.replace('.', '-')}"
    spec = replica_spec(
        name, REPLICA_SERVERS[server], replicas=1, gpus=0, events=args.events, gap=0.0
    )
    service = await ready_service(client, spec)
    await routed_everywhere(routers, name)
    (replica,) = service.replicas
    home = index_of(replica.node)
    elsewhere = next(index for index in routers if index != home)
    urls = {
        "direct": f"http://{host_of(home)}:{replica.port}",
        "local router": f"http://{routers[home]}",
        "remote router": f"http://{routers[elsewhere]}",
    }
    daemons = {
        "direct": 0,
        "local router": nodes[home - 1].process.pid,
        "remote router": nodes[elsewhere - 1].process.pid,
    }
    serving = replica_pid(nodes[home - 1], name)
    urls["router alone"] = f"http://{floor.address}"
    daemons["router alone"] = floor.process.pid
    floor.route_to(f"{host_of(home)}:{replica.port}", name)
    found: dict[Key, Figures] = {}
    for _ in range(args.rounds):
        for clients, seconds in ((args.clients, args.seconds), (1, args.seconds / 3)):
            for mode in MODES:
                body = chat_body(name, stream=mode == "streamed")
                for path in PATHS:
                    await drive(
                        urls[path] + "/v1/chat/completions", body,
                        found.setdefault((clients, mode, path), Figures()),
                        stream=mode == "streamed", clients=clients, events=args.events,
                        seconds=seconds, router_pid=daemons[path], replica_pid=serving,
                    )  # fmt: skip
    await client.delete_service(name, timeout=10)
    return found


def ms(value: float) -> str:
    return f"{value * 1000:.2f}"


def micros_each(cpu: float, requests: int) -> str:
    return f"{cpu / requests * 1e6:,.0f}" if requests else "-"


def latency_rows(server: str, found: dict[Key, Figures]) -> list[str]:
    rows = []
    for clients, mode, path in found:
        figures = found[(clients, mode, path)]
        direct = found[(clients, mode, "direct")]
        lead = f"| {server} | {mode} | {clients} | {path} "
        if not (figures.latency and direct.latency):
            rows.append(f"{lead}| 0 | | | | | | | | | {figures.failed} |")
            continue
        p50 = statistics.median(figures.latency)
        added = p50 - statistics.median(direct.latency)
        first = (
            f"{ms(statistics.median(figures.first_event))} / "
            f"{ms(percentile(figures.first_event, 0.99))}"
            if figures.first_event
            else "-"
        )
        router = micros_each(figures.router_cpu, figures.sent) if path != "direct" else "-"
        rows.append(
            f"{lead}| {figures.rate:,.0f} | {figures.rate / direct.rate:.0%} | {ms(p50)} "
            f"| {ms(percentile(figures.latency, 0.99))} | {added * 1000:+.2f} | {first} "
            f"| {router} | {micros_each(figures.replica_cpu, figures.sent)} "
            f"| {micros_each(figures.client_cpu, figures.sent)} | {figures.failed} |"
        )
    return rows


def verdicts(found: dict[Key, Figures], clients: int) -> list[str]:
    """The targets for the local router against direct (targets.md, Services):
    throughput with ``clients`` clients, added latency with them and with one."""
    lines = []
    for mode in MODES:
        loaded = found[(clients, mode, "direct")], found[(clients, mode, "local router")]
        alone = found[(1, mode, "direct")], found[(1, mode, "local router")]
        if not all(figures.latency for figures in (*loaded, *alone)):
            lines.append(f"- {mode}: no answers to compare")
            continue
        share = loaded[1].rate / loaded[0].rate
        lines.append(
            f"- {mode}, {clients} clients: local router {share:.0%} of direct throughput "
            f"(≥ 80%: {'met' if share >= 0.8 else 'not met'})"
        )
        for count, (direct, local) in ((clients, loaded), (1, alone)):
            added = statistics.median(local.latency) - statistics.median(direct.latency)
            said = f"- {mode}, {count} client{'s' if count > 1 else ''}: p50 {added * 1000:+.2f} ms"
            said += f" (≤ +1 ms: {'met' if added <= 0.001 else 'not met'})"
            if mode == "streamed":
                first = statistics.median(local.first_event) - statistics.median(direct.first_event)
                said += f", first event p50 {first * 1000:+.2f} ms"
                said += f" (≤ +2 ms: {'met' if first <= 0.002 else 'not met'})"
            lines.append(said)
    return lines


# -- a replica's node killed -----------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    started: float
    """Wall-clock seconds (the nodes' log times are too)."""
    ended: float
    ok: bool
    stream: bool


def replica_of(answer: bytes) -> str:
    """The replica that wrote a whole answer or a stream (its first event)."""
    first = answer.split(b"\n", 1)[0].removeprefix(b"data: ")
    return str(json.loads(first)["replica"])


def log_time(record: dict[str, object]) -> float:
    return datetime.fromisoformat(str(record["time"])).timestamp()


def logged(node: NodeProcess, event: str, **fields: str) -> list[float]:
    """Times of ``node``'s log records of ``event`` with these fields."""
    return [
        log_time(record)
        for record in node.log_records()
        if record.get("event") == event and all(record.get(k) == v for k, v in fields.items())
    ]


async def node_loss(
    nodes: list[NodeProcess], client: AsyncClient, routers: dict[int, str], events: int
) -> list[str]:
    """Kills a replica's node under load through the third node's router; the table
    rows of what the clients and that node saw."""
    name = "bench-failover"
    spec = replica_spec(name, router_replica.__file__, replicas=2, gpus=1, events=events, gap=0.001)
    service = await ready_service(client, spec)
    await routed_everywhere(routers, name)
    placed = {replica.node: replica for replica in service.replicas}
    leader = (await client.status(timeout=5)).leader
    # Kill a follower's node: this measures the routers and membership, not an election.
    doomed = next(node for node in nodes if node.name in placed and node.name != leader)
    spare = next(node for node in nodes if node.name not in placed)
    url = f"http://{routers[index_of(spare.name)]}/v1/chat/completions"
    lost = placed[doomed.name].job_id

    outcomes: list[Outcome] = []
    stop = asyncio.Event()
    replicas_seen: set[str] = set()

    async def sender(session: aiohttp.ClientSession, stream: bool) -> None:
        body = chat_body(name, stream=stream)
        while not stop.is_set():
            started = time.time()
            try:
                async with session.post(url, data=body, headers=JSON) as answer:
                    data = await answer.read()
                ok = answer.status == 200 and (not stream or data.endswith(b"data: [DONE]\n\n"))
                if ok:
                    replicas_seen.add(replica_of(data))
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            outcomes.append(Outcome(started, time.time(), ok, stream))
            await asyncio.sleep(LOSS_PAUSE_SECONDS)

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        senders = [
            asyncio.create_task(sender(session, stream=index % 2 == 1))
            for index in range(LOSS_CLIENTS)
        ]

        async def seen() -> set[str]:
            return replicas_seen

        await eventually(
            seen,
            lambda seen: {replica.job_id for replica in placed.values()} <= seen,
            within=10,
            what="both replicas answering through the third node's router",
        )
        await asyncio.sleep(1.0)
        killed_at = time.time()
        doomed.kill()  # kill -9 of the daemon ...
        kill_everything_under(doomed.data_dir / "runs")  # ... and of its replica

        async def deaths_seen() -> list[float]:
            return logged(spare, "membership.dead", peer=doomed.name)

        deaths = await eventually(
            deaths_seen,
            bool,
            within=30,
            what=f"{spare.name} sees {doomed.name} dead",
        )
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.gather(*senders)

    after = [o for o in outcomes if o.ended >= killed_at]
    failed = [o for o in after if not o.ok]
    refused = [t for t in logged(spare, "router.upstream_failed", job=lost) if t >= killed_at]
    slowest = max((o.ended - o.started for o in after if o.ok), default=0.0)
    last_failed = (
        f"{max(o.ended for o in failed) - killed_at:.3f} s "
        f"({sum(o.stream for o in failed)} streamed, {sum(not o.stream for o in failed)} whole)"
        if failed
        else "none failed"
    )
    last_refused = f"{max(refused) - killed_at:.3f} s" if refused else "never"
    return [
        f"| requests sent through {spare.name}'s router ({LOSS_CLIENTS} clients) | "
        f"{len(outcomes)}, {len(after)} ending after the kill | |",
        f"| kill → last failed request | {last_failed} | {len(failed)} failed |",
        f"| kill → {spare.name} sees {doomed.name} dead (membership) | "
        f"{min(deaths) - killed_at:.3f} s | target: last failure ≤ this |",
        f"| kill → the router last tried the dead replica (refused, sent on) | {last_refused} "
        f"| {len(refused)} tries |",
        f"| slowest answer that ended after the kill | {slowest * 1000:.0f} ms | |",
    ]


# -- the run ---------------------------------------------------------------------------


async def measure(
    lab: Lab, floor: FloorRouter, args: argparse.Namespace
) -> tuple[list[str], list[str], list[str]]:
    routers = {index: f"{host_of(index)}:{free_port(host_of(index))}" for index in range(1, 4)}
    nodes = start_cluster(
        lab, NODES,
        extra_args=["--simulate-gpus", "1xA100-80GB", "--log-level", "info"],
        env=FAST_VOTERS,
        env_of=lambda index: {"MURMUR_NODE_ROUTER_LISTEN": routers[index]},
    )  # fmt: skip
    await wait_agreed(nodes, lab, voters=NODES, within=30)
    rows: list[str] = []
    targets: list[str] = []
    async with client_for(nodes[0], lab.admin_identity) as client:
        for server in args.servers:
            found = await paths_side_by_side(client, floor, nodes, routers, server, args)
            rows += latency_rows(server, found)
            targets += [f"{server} replica:", *verdicts(found, args.clients)]
        loss = await node_loss(nodes, client, routers, args.events)
    return rows, targets, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per path, mode and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--events", type=int, default=64)
    parser.add_argument(
        "--servers", default=",".join(REPLICA_SERVERS), help="replica servers, comma-separated"
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s")
    args = parser.parse_args()
    args.servers = [server for server in args.servers.split(",") if server]
    if args.quick:
        args.seconds, args.rounds = 1.0, 1
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="murmur-bench-router-") as root:
        lab = create_lab(Path(root))
        floor = FloorRouter()
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                rows, targets, loss = runner.run(measure(lab, floor, args))
        finally:
            floor.close()
            lab.stop_all()
            for node in lab.nodes:
                kill_everything_under(node.data_dir / "runs")
    print(
        f"# murmur router benchmark ({os.cpu_count()} cores, {sys.version.split()[0]}, "
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after; "
        f"{args.clients} clients, {args.events} events a stream, "
        f"{args.rounds} x {args.seconds:g} s per path and mode, a third of it for 1 client; "
        f"{time.monotonic() - started:.0f} s)"
    )
    print(
        "| replica server | answer | clients | path | requests/s | of direct | p50 ms | p99 ms "
        "| p50 vs direct | first event p50 / p99 ms | router CPU µs/request "
        "| replica CPU µs/request | clients' CPU µs/request | failed |"
    )
    print(
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |"
    )
    for line in rows:
        print(line)
    print()
    for line in targets:
        print(line)
    print()
    print("| a replica's node killed (daemon and replica, SIGKILL) | after the kill | |")
    print("| --- | --- | --- |")
    for line in loss:
        print(line)


if __name__ == "__main__":
    main()
