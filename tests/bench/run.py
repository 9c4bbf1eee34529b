"""Foundation benchmarks: node start, RPC latency over mTLS, CLI wall time, daemon RSS.

Run with ``make bench`` (or ``python -m tests.bench.run [--quick]``). Each figure
is printed next to its target from the product brief and, where one can run
here, the floor measured in the same run (a bare grpc.aio health check).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from murmur import AsyncClient, resolve_connect_config
from murmur.certs import NODE_TLS_NAME, IdentityBundle
from tests.support.nodes import Lab, NodeProcess, create_lab, free_port


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def rss_megabytes(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def health_latencies(address: str, identity: Path, calls: int) -> list[float]:
    bundle = IdentityBundle.read(identity)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=bundle.ca_certificate_pem,
        private_key=bundle.key_pem,
        certificate_chain=bundle.certificate_pem,
    )
    samples = []
    async with grpc.aio.secure_channel(
        address, credentials, options=[("grpc.ssl_target_name_override", NODE_TLS_NAME)]
    ) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        await stub.Check(health_pb2.HealthCheckRequest())
        for _ in range(calls):
            start = time.perf_counter()
            await stub.Check(health_pb2.HealthCheckRequest())
            samples.append(time.perf_counter() - start)
    return samples


def floor_latencies(lab: Lab, node: NodeProcess, calls: int) -> list[float]:
    """Health checks against a bare grpc.aio mTLS server, in its own process."""
    address = f"127.0.0.1:{free_port()}"
    identity = node.data_dir / "identity.pem"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.floor_server", str(identity), address],
        stdout=subprocess.PIPE,
        env=lab.env,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"
        return asyncio.run(health_latencies(address, lab.admin_identity, calls))
    finally:
        server.kill()
        server.wait()


async def rpc_latencies(node: NodeProcess, identity: Path, calls: int) -> dict[str, list[float]]:
    config = resolve_connect_config(node=node.address, identity=identity)
    results: dict[str, list[float]] = {"status": [], "whoami": [], "channel": []}
    results["health"] = await health_latencies(node.address, identity, calls)
    async with AsyncClient(config) as client:
        await client.status()
        for _ in range(calls):
            start = time.perf_counter()
            await client.status()
            results["status"].append(time.perf_counter() - start)
            start = time.perf_counter()
            await client.whoami()
            results["whoami"].append(time.perf_counter() - start)
    for _ in range(max(10, calls // 20)):
        start = time.perf_counter()
        async with AsyncClient(config) as client:
            await client.whoami()
        results["channel"].append(time.perf_counter() - start)
    return results


def cli_wall_times(lab: Lab, node: NodeProcess, runs: int) -> list[float]:
    env = {**lab.env, "MURMUR_IDENTITY": str(lab.admin_identity), "MURMUR_NODE": node.address}
    murmur = Path(sys.executable).parent / "murmur"
    command = [str(murmur)] if murmur.exists() else [sys.executable, "-m", "murmur"]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([*command, "status"], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def start_times(lab: Lab, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        node = lab.start_node("node-1", data_dir=lab.first_data_dir)
        times.append(time.perf_counter() - start)
        node.terminate()
    return times


def ms(value: float) -> str:
    return f"{value * 1000:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    args = parser.parse_args()
    calls, cli_runs, starts = (200, 5, 2) if args.quick else (2000, 30, 10)
    with tempfile.TemporaryDirectory(prefix="murmur-bench-") as root:
        lab = create_lab(Path(root))
        try:
            start = start_times(lab, starts)
            node = lab.start_node(
                "node-1", data_dir=lab.first_data_dir, extra_args=["--simulate-gpus", "8xA100-80GB"]
            )
            floor = floor_latencies(lab, node, calls)
            latencies = asyncio.run(rpc_latencies(node, lab.admin_identity, calls))
            cli = cli_wall_times(lab, node, cli_runs)
            time.sleep(3)  # idle: let start-up garbage settle
            rss = rss_megabytes(node.process.pid)
        finally:
            lab.stop_all()
    print(f"# murmur foundation benchmarks ({os.cpu_count()} cores, {sys.version.split()[0]})")
    print("| what | p50 | p99 | target / floor |")
    print("| --- | --- | --- | --- |")
    print(
        f"| Health.Check, bare grpc.aio mTLS server (floor, {len(floor)} calls) "
        f"| {ms(statistics.median(floor))} | {ms(percentile(floor, 0.99))} | env.md: ~0.57 ms p50 |"
    )
    for key, label in (
        ("health", "Health.Check on a murmur node (all interceptors)"),
        ("status", "GetStatus via murmur.AsyncClient"),
        ("whoami", "WhoAmI via murmur.AsyncClient"),
    ):
        samples = latencies[key]
        print(
            f"| {label} ({len(samples)} calls) | {ms(statistics.median(samples))} "
            f"| {ms(percentile(samples, 0.99))} | floor + interceptors |"
        )
    channel = latencies["channel"]
    print(
        f"| new client + mTLS channel + first call | {ms(statistics.median(channel))} "
        f"| {ms(percentile(channel, 0.99))} | env.md: ~3.3 ms |"
    )
    print(
        f"| `murmur status` CLI wall time ({len(cli)} runs) | {ms(statistics.median(cli))} "
        f"| {ms(max(cli))} (max) | ≤ 500 ms |"
    )
    print(
        f"| node start → ready ({len(start)} runs) | {ms(statistics.median(start))} "
        f"| {ms(max(start))} (max) | — |"
    )
    print(f"| daemon RSS, idle, 1 node | {rss:.1f} MB | | ≤ 80 MB |")


if __name__ == "__main__":
    main()
