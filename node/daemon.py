"""The node daemon's lifecycle: start everything, serve, stop cleanly.

Start order matters for "changes nothing on bad input": the data dir is
checked and locked (one daemon per data dir, for the daemon's whole life) and the
identity obtained before the store is opened or a port bound,
so a wrong token or an unwritable directory stops the node with one line and
no half-made state. Shutdown runs in reverse: health goes NOT_SERVING, the
servers stop accepting and give in-flight RPCs ``shutdown_grace_seconds`` to
finish, background tasks are cancelled and awaited, and the store is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from murmur import scheduler
from murmur.certs import CertificateError
from murmur.node.agent.convert import dataset_message
from murmur.node.agent.datasets import DatasetCatalog
from murmur.node.agent.executor import RunExecutor
from murmur.node.agent.gpus import GpuSource, open_gpu_probe
from murmur.node.agent.replicas import ReplicaEndpoints
from murmur.node.agent.runtimes.accounts import AccountPolicy
from murmur.node.agent.runtimes.base import Runtime
from murmur.node.agent.runtimes.docker import DockerRuntime
from murmur.node.agent.runtimes.process import ProcessRuntime
from murmur.node.api.peer_client import PeerClient
from murmur.node.api.server import build_api_server
from murmur.node.api.services.api_keys import ApiKeyCalls
from murmur.node.api.services.cluster import ClusterServicer
from murmur.node.api.services.peer import PeerServicer
from murmur.node.api.services.revocations import RevocationCalls
from murmur.node.api.services.runs import LocalNodeStub, RunStubs
from murmur.node.config import NodeConfig
from murmur.node.control.cluster_view import ClusterView
from murmur.node.control.consensus.leadership import Leadership, known_leadership, raft_leadership
from murmur.node.control.consensus.runner import ConsensusRunner
from murmur.node.control.consensus.voter_manager import VoterManager
from murmur.node.control.consensus.voter_policy import VoterPolicyConfig
from murmur.node.control.drain import NodeDrain
from murmur.node.control.leader.drain_sync import DrainFlagSync
from murmur.node.control.leader.duties import LeaderDuties
from murmur.node.control.leader.retention import JobRetention
from murmur.node.control.queue.audit_trail import AuditTrail
from murmur.node.control.queue.cluster_jobs import ClusterJobs
from murmur.node.control.queue.job_archive import JobArchive
from murmur.node.control.queue.protocol import PROTOCOL_LEVEL
from murmur.node.control.queue.protocol_gate import ProtocolGate
from murmur.node.control.queue.state import ControlState
from murmur.node.control.raft import ElectionConfig
from murmur.node.control.revocation_sync import RevocationSync
from murmur.node.control.run_reporter import RunReporter
from murmur.node.data_dir_lock import lock_data_dir
from murmur.node.deny_list import DenyList
from murmur.node.errors import StartupError
from murmur.node.event_log import EventLog
from murmur.node.identity.bootstrap import obtain_identity
from murmur.node.local_node import VERSION, LocalNode
from murmur.node.logs import configure_logging
from murmur.node.membership import MembershipRunner, PeerTransport, encode_meta
from murmur.node.membership.node_meta import LoadDamper
from murmur.node.membership.seeds import SeedBook
from murmur.node.router.key_sync import KeyBookSync, fetch_over
from murmur.node.router.keys import KeyGate
from murmur.node.router.proxy import ModelRouter, RouterServer
from murmur.node.router.routes import RoutingTable
from murmur.node.router.tls import RouterTls
from murmur.node.router.traffic import TrafficWindow
from murmur.node.router.usage import UsageCounter
from murmur.node.router.usage_flush import UsageFlusher
from murmur.node.trust import ClusterTrust
from murmur.storage import Store, StoreError

_log = logging.getLogger("murmur.node")

LEAVE_TIMEOUT_SECONDS = 2.0
"""How long a stopping node spends telling peers it leaves (they then record it as
left rather than dead); a node that cannot reach them in that time stops anyway."""

PEER_RECORD_INTERVAL_SECONDS = 30.0
"""How often the live peers are written down as seeds for the next start."""


def build_runtimes(config: NodeConfig, node_name: str, *, real_gpus: bool) -> dict[str, Runtime]:
    """The process runtime always; docker too, whether or not an engine answers now."""
    return {
        "process": ProcessRuntime(
            runs_dir=config.runs_dir, node_name=node_name, scratch_dir=config.scratch_dir
        ),
        "docker": DockerRuntime(
            node_name=node_name,
            runs_dir=config.runs_dir,
            docker_host=config.docker_host,
            network_mode=config.job_network_mode,
            real_gpus=real_gpus,
        ),
    }


async def describe_runtimes(local: LocalNode, runtimes: dict[str, Runtime]) -> None:
    """Which runtimes can run jobs now, and why not the others (shown in status)."""
    usable, notes = [], []
    for name, runtime in runtimes.items():
        ready, why = await runtime.available()
        if ready:
            usable.append(name)
        else:
            notes.append(why)
    local.runtimes = tuple(usable)
    local.runtime_notes = "; ".join(notes)


PRIVATE_UMASK = 0o077
"""The daemon creates every file for itself alone unless it says otherwise: its
store, logs and run files hold other users' jobs, secrets and keys."""

SHARED_ENTRIES = frozenset({"work", "datasets"})
"""Entries of the data dir that jobs' accounts reach by path: scratch dirs, and the
default dataset root. Each guards its own contents."""


def prepare_data_dir(path: Path) -> None:
    """Creates the data dir and proves it is writable, or says why not.

    The data dir is 0711: nobody else may list it, but a job's account may pass
    through to its own scratch dir (``work/<run>``) and to datasets. Everything else
    in it is made private to the daemon (0700 or 0600 by the umask; entries of an
    older version, created before that, lose their group and other bits here).
    """
    os.umask(PRIVATE_UMASK)
    try:
        path.mkdir(mode=0o711, parents=True, exist_ok=True)
        path.chmod(0o711)
        for entry in path.iterdir():
            if entry.name not in SHARED_ENTRIES and not entry.is_symlink():
                mode = entry.stat().st_mode & 0o7777
                if mode & 0o077:
                    entry.chmod(mode & 0o7700)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"data dir {path} is not writable: {exc.strerror or exc}") from None


async def serve(config: NodeConfig, *, stop: asyncio.Event) -> None:
    """Runs the node until ``stop`` is set.

    Raises:
        StartupError: the node could not start; the message says what to do.
    """
    prepare_data_dir(config.data_dir)
    # Before the identity and the store: a second daemon on this data dir stops here.
    with lock_data_dir(config.data_dir):
        await _serve_holding_data_dir(config, stop=stop)


async def _serve_holding_data_dir(config: NodeConfig, *, stop: asyncio.Event) -> None:
    config.runs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not config.data_roots:
        # Ours (``<data dir>/datasets``): traversable, so that jobs' accounts reach
        # the datasets under it by name; an admin's own roots keep their modes.
        default_root = config.effective_data_roots[0]
        default_root.mkdir(parents=True, exist_ok=True)
        default_root.chmod(0o711)
    protocol_level, version = speaks(config)
    try:
        identity = await obtain_identity(config)
    except CertificateError as exc:
        raise StartupError(str(exc)) from None
    try:
        store = await Store.open(config.store_path)
    except StoreError as exc:
        raise StartupError(str(exc)) from None
    probe = None
    transport: PeerTransport | None = None
    try:
        probe = await asyncio.to_thread(open_gpu_probe, simulate=config.simulate_gpus)
        join_address = config.advertise_join_address if identity.ca else None
        local = LocalNode(
            name=identity.name,
            address=config.advertise_address,
            join_address=join_address,
            holds_ca=identity.ca is not None,
            gpu_probe=probe,
            labels=dict(config.labels),
            version=version,
            protocol_level=protocol_level,
        )
        events = EventLog(store)
        datasets = DatasetCatalog(store, config.effective_data_roots)
        await datasets.load()
        local.datasets = lambda: [dataset_message(r, identity.name) for r in datasets.records()]
        seed_book = SeedBook(store, own_address=str(config.advertise_address))
        await seed_book.remember_issuer(identity.issuer_address)
        transport = PeerTransport(identity.bundle)
        load_damper = LoadDamper()
        membership = MembershipRunner(
            name=identity.name,
            advertise_address=str(config.advertise_address),
            transport=transport,
            config=config.gossip,
            seeds=await seed_book.seeds(str(seed) for seed in config.seeds),
            meta_source=lambda: encode_meta(load_damper.apply(local.describe())),
            meta_refresh_interval=config.load_gossip_interval_seconds,
        )
        datasets.on_change = membership.request_meta_refresh
        view = ClusterView(local, membership)

        def member_address(name: str) -> str | None:
            member = membership.member(name)
            return member.address if member is not None else None

        def consensus_changed() -> None:
            membership.request_meta_refresh()
            local.updates.publish(local.describe())

        control = ControlState(
            retry_backoff_base_us=int(config.retry_backoff_seconds * 1e6),
            protocol_level=protocol_level,
        )
        consensus = ConsensusRunner(
            name=identity.name,
            advertise_address=str(config.advertise_address),
            store=store,
            transport=transport,
            address_of=member_address,
            state_machine=control,
            config=ElectionConfig(),
            bootstrap=identity.ca is not None,
            on_change=consensus_changed,
            snapshot_every=config.raft_snapshot_entries,
        )
        await consensus.start()
        local.election = consensus.election_facts
        local.upgrade_needed = lambda: consensus.halted
        # Control protocol levels: a command some node would not read is refused
        # (node/control/queue/protocol_gate.py).
        protocol_gate = ProtocolGate(
            name=identity.name, version=version, level=protocol_level, control=control,
            consensus=consensus, membership=membership,
        )  # fmt: skip
        consensus.admit = protocol_gate.admit
        voter_manager = VoterManager(
            consensus=consensus,
            membership=membership,
            config=VoterPolicyConfig(
                stabilization_seconds=config.voter_stabilization_seconds,
                max_voters=config.max_voters,
            ),
            may_apply_log=protocol_gate.may_apply_log,
        )
        runtimes = build_runtimes(
            config, identity.name, real_gpus=probe.inventory().source is GpuSource.NVML
        )

        def waiting() -> Mapping[str, tuple[str, int]]:
            return leader_duties.waiting()

        def leadership() -> Leadership:
            # A voter's own Raft answers without describing every node.
            local = consensus.status()
            return raft_leadership(local, view.address_of) or known_leadership(local, view.nodes())

        job_archive = JobArchive(store)
        cluster_jobs = ClusterJobs(
            consensus=consensus,
            control=control,
            peers=transport,
            leadership=leadership,
            waiting=waiting,
            archive=job_archive,
            gate=protocol_gate,
        )
        job_retention = JobRetention(
            consensus=consensus,
            control=control,
            retention_seconds=config.job_retention_seconds,
        )
        run_reporter = RunReporter(cluster_jobs)
        replicas = ReplicaEndpoints(
            run_dir=lambda run_id: config.runs_dir / run_id,
            on_change=local.publish,
            # The executor is made below; by the time a replica runs, it exists.
            on_unhealthy=lambda run_id, reason: executor.fail_run(run_id, reason),
        )
        local.endpoints = replicas.endpoints
        executor = RunExecutor(
            store=store,
            node_name=identity.name,
            accounts=AccountPolicy(
                mapping=config.job_accounts,
                fallback=config.job_fallback_account,
                allow_root=config.allow_root_jobs,
            ),
            job_path_roots=config.job_path_roots,
            runs_dir=config.runs_dir,
            runtimes=runtimes,
            datasets=datasets.paths,
            stop_grace_seconds=config.stop_grace_seconds,
            network_mode=config.job_network_mode,
            on_event=events.publish,
            on_run_change=run_reporter.report,
            on_allocation_change=local.allocation_changed,
            default_lease_seconds=config.run_lease_seconds,
            node_gpus=lambda: [index for index, _, _ in local.gpu_resources()],
            replicas=replicas,
        )
        leader_duties = LeaderDuties(
            consensus=consensus,
            control=control,
            jobs=cluster_jobs,
            view=view,
            peers=RunStubs(transport, str(config.advertise_address), LocalNodeStub(executor)),
            lease_seconds=config.run_lease_seconds,
            local_address=str(config.advertise_address),
            stop_grace_seconds=config.stop_grace_seconds,
            start_timeout_seconds=config.run_start_timeout_seconds,
            policy=dataclasses.replace(
                scheduler.DEFAULT_POLICY,
                default_request=scheduler.DefaultRequest(
                    cpus=config.default_job_cpus, memory_bytes=config.default_job_memory_bytes
                ),
            ),
        )

        # The cluster's audit trail: this node's outbox shipped to the log, the chain
        # every voter applies stored, ListAudit / VerifyAudit (node/control/queue/audit_trail.py).
        audit_trail = AuditTrail(
            store=store,
            node_name=identity.name,
            control=control,
            consensus=consensus,
            peers=transport,
            leadership=leadership,
            commit=cluster_jobs.commit,
        )

        def drain_changed() -> None:
            membership.request_meta_refresh()
            local.updates.publish(local.describe())

        drain = NodeDrain(
            store=store,
            local=local,
            events=events,
            replicate=cluster_jobs.commit,
            on_change=drain_changed,
        )
        await drain.load()
        drain_sync = DrainFlagSync(
            consensus=consensus,
            control=control,
            view=view,
            drain=drain,
            node_stub=transport.node_stub,
        )
        # Certificate revocations: kept in the store, learnt from the log and from
        # peers, checked on every call (node/control/revocation_sync.py).
        deny_list = DenyList()

        def revocations_changed() -> None:
            local.revocations_revision = deny_list.revision
            local.ca_changes_revision = revocation_sync.ca_changes.revision
            membership.request_meta_refresh()

        revocation_sync = RevocationSync(
            deny_list=deny_list,
            store=store,
            control=control,
            membership=membership,
            cluster_stub=transport.cluster_stub,
            on_change=revocations_changed,
            own_identity=identity.bundle.identity,
        )
        await revocation_sync.load()

        def applied(result: object) -> None:
            cluster_jobs.applied(result)
            leader_duties.applied(result)
            audit_trail.applied(result)
            revocation_sync.wake()  # a revocation, maybe: a voter enforces it at once

        consensus.on_applied = applied
        local.gpu_holders = executor.gpu_holders
        local.active_runs = lambda: executor.active_run_count
        await describe_runtimes(local, runtimes)
        # Enrollment, the CA key sealed to the voters, every holder's join listener,
        # certificate renewal (node/trust.py).
        peer_client = PeerClient(identity.bundle)
        trust = ClusterTrust(
            config=config, identity=identity, store=store, events=events, local=local,
            deny_list=deny_list, commit=cluster_jobs.commit, view=view, consensus=consensus,
            membership=membership, transport=transport, peer_client=peer_client,
            on_local_change=consensus_changed, record_audit=audit_trail.record,
            ca_changes=revocation_sync.ca_changes, learn_now=revocation_sync.sync_once,
        )  # fmt: skip
        enrollment = trust.enrollment
        health_servicer = HealthServicer()
        servers = [
            build_api_server(
                listen=config.listen,
                bundle=identity.bundle,
                store=store,
                node_name=identity.name,
                cluster=ClusterServicer(
                    view=view,
                    store=store,
                    events=events,
                    enrollment=enrollment,
                    ca_fingerprint=lambda: enrollment.signing_fingerprint,
                    executor=executor,
                    cluster_jobs=cluster_jobs,
                    path_roots=tuple(PurePosixPath(p) for p in config.job_path_roots),
                    datasets=datasets,
                    drain=drain,
                    membership=membership,
                    peers=peer_client,
                    peer_channels=transport,
                    consensus=consensus,
                    audit_trail=audit_trail,
                    revocations=RevocationCalls(
                        sync=revocation_sync, cluster_jobs=cluster_jobs, node_name=identity.name
                    ),
                    rotate_ca=trust.rotate,
                    api_keys=ApiKeyCalls(cluster_jobs=cluster_jobs),
                ),
                peer=PeerServicer(
                    view=view,
                    drain=drain,
                    membership=membership,
                    consensus=consensus,
                    cluster_jobs=cluster_jobs,
                    executor=executor,
                    audit_trail=audit_trail,
                    api_keys=lambda: control.api_keys,
                    datasets=datasets,
                ),
                health_servicer=health_servicer,
                audit_recorder=audit_trail.record,
                deny_list=deny_list,
                trust=trust.servicer,
                certificates=trust.certificates,
            )
        ]
        await local.sample_once()
        router: RouterServer | None = None
        key_sync: KeyBookSync | None = None
        usage_flusher: UsageFlusher | None = None
        if config.router_listen is not None:
            # API keys (node/router/keys.py): checked against the log's table, their
            # usage flushed into the log (node/router/usage_flush.py).
            key_sync = KeyBookSync(
                table=lambda: control.api_keys, is_voter=lambda: consensus.is_voter,
                leadership=leadership, fetch=fetch_over(transport.node_stub),
            )  # fmt: skip
            usage = UsageCounter()
            usage_flusher = UsageFlusher(
                counter=usage, commit=cluster_jobs.commit, origin=identity.name,
                interval=config.router_usage_flush_seconds,
            )  # fmt: skip
            # Each service's requests/s and latency, gossiped for `murmur top`.
            traffic = TrafficWindow()
            local.traffic = traffic.summary
            router = RouterServer(
                ModelRouter(
                    lambda: RoutingTable(view.nodes(), identity.name),
                    keys=KeyGate(key_sync.book, required=config.router_requires_keys),
                    usage=usage,
                    traffic=traffic,
                ),
                config.router_listen.host,
                config.router_listen.port,
                # HTTPS with this node's certificate, renewed live (node/router/tls.py).
                tls=RouterTls(trust.certificates) if config.router_https else None,
            )
        # What listens, the router's port first: a port taken ends the start before
        # anything serves (and before the node says it is ready), closing what opened.
        async with contextlib.AsyncExitStack() as opened:
            await trust.start()
            opened.push_async_callback(trust.close, 0)
            if router is not None:
                await router.start()
                opened.push_async_callback(router.close)
            for server in servers:
                await server.start()
                opened.push_async_callback(server.stop, 0)
            opened.pop_all()  # all open: the stop below closes them
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        inventory = local.inventory
        _log.info(
            "node ready",
            extra={
                "event": "node.ready",
                "node": identity.name,
                "address": str(config.advertise_address),
                "join_address": str(join_address) if join_address else "",
                "gpus": len(inventory.devices),
                "gpu_source": inventory.source.value,
                "gpu_reason": inventory.reason,
                "pid": os.getpid(),
            },
        )
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(local.run_telemetry(config.telemetry_interval_seconds)),
                tasks.create_task(executor.run()),
                tasks.create_task(membership.run()),
                tasks.create_task(membership.join()),
                tasks.create_task(consensus.run()),
                tasks.create_task(voter_manager.run()),
                tasks.create_task(leader_duties.run()),
                tasks.create_task(drain_sync.run()),
                tasks.create_task(revocation_sync.run()),
                tasks.create_task(trust.run()),
                tasks.create_task(job_retention.run()),
                tasks.create_task(job_archive.run()),
                tasks.create_task(audit_trail.run()),
                tasks.create_task(run_reporter.run()),
                tasks.create_task(protocol_gate.run()),
                tasks.create_task(view.relay()),
                tasks.create_task(
                    seed_book.keep_up_to_date(membership, interval=PEER_RECORD_INTERVAL_SECONDS)
                ),
                tasks.create_task(
                    log_daemon_stats(
                        STATS_LOG_INTERVAL_SECONDS,
                        lambda: counters_of(
                            leader=leader_duties.stats,
                            consensus=consensus.stats(),
                            cluster_jobs=cluster_jobs.stats,
                        ),
                    )
                ),
            ]
            if key_sync is not None and usage_flusher is not None:
                background.append(tasks.create_task(key_sync.run()))
                background.append(tasks.create_task(usage_flusher.run()))
            await stop.wait()
            _log.info("node stopping", extra={"event": "node.stopping", "node": identity.name})
            await health_servicer.enter_graceful_shutdown()
            # Peers record a node that says goodbye as left, not dead. The servers still
            # run meanwhile: the goodbye's acks come back through them.
            await membership.leave(LEAVE_TIMEOUT_SECONDS)
            if router is not None:
                await router.close()
            if usage_flusher is not None:
                # What the router counted since its last flush, while a leader may
                # still take it (lost if none does in time).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(usage_flusher.flush_once(), USAGE_FLUSH_AT_STOP_SECONDS)
            await asyncio.gather(
                *(server.stop(config.shutdown_grace_seconds) for server in servers),
                trust.close(config.shutdown_grace_seconds),
            )
            # Runs keep going without us (supervisors, containers); the next start adopts them.
            for task in background:
                task.cancel()
            await cluster_jobs.close()
            await replicas.close()
            with contextlib.suppress(StoreError):
                await job_archive.flush()  # what the log forgot last, before the store closes
            with contextlib.suppress(StoreError):
                await audit_trail.flush()  # the audit chain applied, the outbox cursor
    finally:
        if transport is not None:
            await transport.close()
        if probe is not None:
            await asyncio.to_thread(probe.close)
        await store.close()
    _log.info("node stopped", extra={"event": "node.stopped"})


def speaks(config: NodeConfig) -> tuple[int, str]:
    """The control protocol level and the version this node reports: this version's,
    or, with ``simulate_protocol_level`` (a testing knob), an older level and a
    version that says it is simulated.

    Raises:
        StartupError: the simulated level is above this version's.
    """
    level = config.simulate_protocol_level
    if level is None:
        return PROTOCOL_LEVEL, VERSION
    if level > PROTOCOL_LEVEL:
        raise StartupError(
            f"simulate_protocol_level {level} is above this version's control protocol "
            f"({PROTOCOL_LEVEL}): only an older version can be simulated"
        )
    _log.warning(
        "SIMULATING an older murmur: control protocol %d (this version speaks %d); for tests",
        level,
        PROTOCOL_LEVEL,
        extra={"event": "node.simulated_protocol", "level": level},
    )
    return level, f"{VERSION}+simulated-protocol-{level}"


async def _serve_until_signalled(config: NodeConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, log_task_stacks)
    await serve(config, stop=stop)


def log_task_stacks() -> None:
    """``kill -USR1 PID``: where every asyncio task waits, into the log (the chain of
    coroutines each is suspended in), to see why a daemon seems stuck."""
    for task in asyncio.all_tasks():
        chain: list[str] = []
        awaited: Any = task.get_coro()
        while awaited is not None and len(chain) < 40:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
            if frame is not None:
                where = frame.f_code.co_filename.rsplit("/", 2)[-1]
                chain.append(f"{frame.f_code.co_name} ({where}:{frame.f_lineno})")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
        _log.warning(
            "task %s: %s", task.get_name(), " -> ".join(chain) or "not started",
            extra={"event": "node.task_stack"},
        )  # fmt: skip


USAGE_FLUSH_AT_STOP_SECONDS = 2.0
"""How long a stopping node waits to commit its router's last API key usage."""

STATS_LOG_INTERVAL_SECONDS = 15.0
"""How often the daemon logs its asyncio task count (debug level, event
``daemon.stats``): the soak test (tests/soak) reads it to see that tasks do not
pile up over a daemon's life."""


def counters_of(**groups: Any) -> dict[str, int]:
    """Counter dataclasses as one flat record: ``leader_tasks_failed``,
    ``consensus_sends_messages_dropped``... (the JSON log keeps scalars as they are)."""

    def flatten(prefix: str, value: Any) -> dict[str, int]:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, dict):
            flat: dict[str, int] = {}
            for key, item in value.items():
                flat.update(flatten(f"{prefix}_{key}", item))
            return flat
        return {prefix: int(value)}

    found: dict[str, int] = {}
    for name, group in groups.items():
        found.update(flatten(name, group))
    return found


async def log_daemon_stats(interval: float, counters: Callable[[], dict[str, int]]) -> None:
    """Every ``interval`` seconds, one debug record with the number of asyncio tasks
    and the failure counters of the leader's duties, consensus and the queue (each
    failure is also logged when it happens; these say how many since start)."""
    while True:
        await asyncio.sleep(interval)
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug(
                "daemon stats",
                extra={
                    "event": "daemon.stats",
                    "tasks": len(asyncio.all_tasks()),
                    "pid": os.getpid(),
                    **counters(),
                },
            )


GC_THRESHOLDS = (20_000, 20, 100)
"""``gc.set_threshold`` for the daemon. Python's defaults (700, 10, 10) run a full
collection every few placement passes over a deep queue (a pass makes tens of
thousands of short-lived objects that outlive the young generations), and a full
collection of a daemon holding 10,000 jobs stops the event loop for 50-80 ms. The
daemon makes few reference cycles, so collecting them less often costs little."""


def tune_garbage_collector() -> None:
    """Freezes what start-up made (modules, classes: never garbage) out of every
    later collection, and sets ``GC_THRESHOLDS``."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_node(config: NodeConfig) -> int:
    """Runs the daemon in the foreground on uvloop; returns the process exit code."""
    configure_logging(config.log_level)
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # uvloop does not build everywhere; asyncio is fine, just slower
        loop_factory = None
    tune_garbage_collector()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve_until_signalled(config))
    except StartupError as exc:
        # One plain line, not a JSON record: this is read by a person at a terminal.
        print(f"murmur node: {exc}", file=sys.stderr)
        return 1
    return 0
