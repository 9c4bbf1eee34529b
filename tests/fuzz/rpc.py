"""RPC fuzzer: generated, mutated and garbage messages to every RPC of a real node.

``python -m tests.fuzz.rpc --cases 10000`` (``make fuzz``) starts one throw-away
``murmur node`` (mutual TLS, a simulated GPU inventory, a data root holding a dataset
and a symlink out of it), then sends it cases: a caller (an admin, a member, a
viewer or a node certificate), one RPC of ClusterService or NodeService, and a
request that is a message hypothesis built from the contract, such a message with
its bytes mutated, or bytes with no structure at all. Server streams are read for
a short while and then cut; a deadline ending one is expected.

It passes when no call ends in a code that means the handler crashed
(``UNKNOWN``, ``INTERNAL``, ``DATA_LOSS``) or in a code nobody chose, every refusal
carries a message, and the node still answers ``GetStatus`` every so often and at
the end. It prints the cases, the crashes, and a table of status codes per method.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
from google.protobuf.descriptor import Descriptor
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from murmur.certs import IdentityBundle, Role
from murmur.v1 import cluster_pb2, node_pb2, types_pb2
from tests.fuzz.messages import KnownNames, MessageStrategies, garbage, mutations
from tests.support.cluster import mtls_channel
from tests.support.nodes import Lab, NodeProcess, create_lab

UNARY_TIMEOUT_SECONDS = 15.0
"""A unary call slower than this is reported as a hang."""
STREAM_SECONDS = 1.0
"""How long a server stream is read before its deadline cuts it."""
STREAM_MESSAGES = 20
"""Messages read from a server stream before the fuzzer cuts it itself."""
STATUS_EVERY = 100
"""Cases between two checks that the node still answers GetStatus."""

CRASH_CODES = frozenset(
    {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DATA_LOSS}
)
DELIBERATE_CODES = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
"""Codes a handler returns on purpose (``DEADLINE_EXCEEDED`` only for streams cut here)."""

CLIENT_CORE_ERROR = "Internal error from Core"

ROLES = ("admin", "member", "viewer", "node")
KINDS = ("generated", "mutated", "garbage")


@dataclass(frozen=True)
class Method:
    path: str
    request: Descriptor
    client_streaming: bool
    server_streaming: bool

    @property
    def short(self) -> str:
        service, name = self.path.strip("/").split("/")
        return f"{service.rsplit('.', 1)[-1].removesuffix('Service')}.{name}"


def contract_methods() -> tuple[Method, ...]:
    """Every method of ClusterService and NodeService, as the contract defines them."""
    services = (
        cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"],
        node_pb2.DESCRIPTOR.services_by_name["NodeService"],
    )
    return tuple(
        Method(
            path=f"/{service.full_name}/{method.name}",
            request=method.input_type,
            client_streaming=method.client_streaming,
            server_streaming=method.server_streaming,
        )
        for service in services
        for method in service.methods
    )


@dataclass(frozen=True)
class Case:
    role: str
    method: Method
    kind: str
    payloads: tuple[bytes, ...]


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str

    @property
    def from_client_core(self) -> bool:
        """The client's gRPC core ended the call itself: a request stream still being
        written when the node refused the call (a race in the client, seen about once
        in 10,000 cases; the node logs nothing and its own INTERNAL names an incident)."""
        return self.code is grpc.StatusCode.INTERNAL and self.details == CLIENT_CORE_ERROR

    @property
    def label(self) -> str:
        return "INTERNAL (client core)" if self.from_client_core else self.code.name


@dataclass(frozen=True)
class Problem:
    case: Case
    outcome: Outcome
    why: str

    def line(self) -> str:
        sizes = "+".join(str(len(p)) for p in self.case.payloads)
        head = self.case.payloads[0][:48].hex() if self.case.payloads else ""
        return (
            f"{self.why}: {self.case.method.short} as {self.case.role}, {self.case.kind} "
            f"({sizes} bytes, {head}...): {self.outcome.code.name} {self.outcome.details!r}"
        )


@dataclass
class Tally:
    cases: int = 0
    codes: dict[str, Counter[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    status_failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, case: Case, outcome: Outcome) -> None:
        self.cases += 1
        self.codes.setdefault(case.method.short, Counter())[outcome.label] += 1
        why = judge(case, outcome)
        if why is not None:
            self.problems.append(Problem(case, outcome, why))

    @property
    def passed(self) -> bool:
        return not self.problems and not self.status_failures

    def report(self) -> str:
        columns = sorted({code for counts in self.codes.values() for code in counts})
        lines = [
            f"cases: {self.cases} in {self.seconds:.0f} s",
            f"crashes and undeliberate answers: {len(self.problems)}",
            f"GetStatus failures: {len(self.status_failures)}",
            "",
            "| method | " + " | ".join(columns) + " |",
            "| --- | " + " | ".join("---:" for _ in columns) + " |",
        ]
        for method in sorted(self.codes):
            counts = self.codes[method]
            cells = " | ".join(str(counts.get(code, 0)) for code in columns)
            lines.append(f"| {method} | {cells} |")
        seen: set[str] = set()
        for problem in self.problems:
            key = f"{problem.why} {problem.case.method.short} {problem.outcome.code.name}"
            if key not in seen:  # one line per kind of problem, not per case
                seen.add(key)
                lines.append(problem.line())
        lines.extend(self.status_failures)
        return "\n".join(lines)


def judge(case: Case, outcome: Outcome) -> str | None:
    """Why ``outcome`` fails the fuzzer, or ``None`` when it is a deliberate answer."""
    code = outcome.code
    if outcome.from_client_core and case.method.client_streaming:
        return None
    if code in CRASH_CODES:
        return "crash"
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return None if case.method.server_streaming else "hang"
    if code not in DELIBERATE_CODES:
        return "undeliberate code"
    if code is not grpc.StatusCode.OK and not outcome.details.strip():
        return "refusal without a message"
    return None


def _identity(data: bytes) -> bytes:
    return data


async def call(channel: grpc.aio.Channel, case: Case) -> Outcome:
    """Sends ``case`` as raw bytes; the answer's code and message."""
    method = case.method
    try:
        if method.client_streaming:

            async def requests() -> AsyncIterator[bytes]:
                for payload in case.payloads:
                    yield payload

            ingest = channel.stream_unary(
                method.path, request_serializer=_identity, response_deserializer=_identity
            )
            await ingest(requests(), timeout=UNARY_TIMEOUT_SECONDS)
        elif method.server_streaming:
            stream = channel.unary_stream(
                method.path, request_serializer=_identity, response_deserializer=_identity
            )
            responses = stream(case.payloads[0], timeout=STREAM_SECONDS)
            read = 0
            async for _ in responses:
                read += 1
                if read >= STREAM_MESSAGES:
                    responses.cancel()
                    break
        else:
            unary = channel.unary_unary(
                method.path, request_serializer=_identity, response_deserializer=_identity
            )
            answer = await unary(case.payloads[0], timeout=UNARY_TIMEOUT_SECONDS)
            _remember(case, answer)
    except grpc.aio.AioRpcError as exc:
        return Outcome(exc.code(), exc.details() or "")
    return Outcome(grpc.StatusCode.OK, "")


_KNOWN = KnownNames(["node-1", "fuzz-node", "admin", "member", "viewer", "ds", "default"])


def _remember(case: Case, answer: bytes) -> None:
    """Keeps the names an answer gives (a job's and its runs' ids, a dataset's name)."""
    name = case.method.path.rsplit("/", 1)[-1]
    with contextlib.suppress(Exception):
        if name in {"SubmitJob", "GetJob", "CancelJob"}:
            job = types_pb2.Job.FromString(answer)
            _KNOWN.add(job.id)
            for run in job.runs:
                _KNOWN.add(run.id)
        elif name == "AddDataset":
            _KNOWN.add(types_pb2.Dataset.FromString(answer).name)


NOT_AS_ADMIN = frozenset({"/murmur.v1.ClusterService/RotateCa"})
"""Methods fuzzed with every role but admin: as admin a well-formed request does what
it says, and a CA rotation's finish would rightly cut off the fuzzer's own
certificates (issued by the retired CA); tests/node/identity covers it with an admin."""


def case_strategy(methods: tuple[Method, ...]) -> st.SearchStrategy[Case]:
    messages = MessageStrategies(_KNOWN)
    by_request = {m.request.full_name: messages.message(m.request) for m in methods}

    @st.composite
    def cases(draw: st.DrawFn) -> Case:
        method = draw(st.sampled_from(methods))
        roles = [r for r in ROLES if r != "admin"] if method.path in NOT_AS_ADMIN else ROLES
        role = draw(st.sampled_from(roles))
        kind = draw(st.sampled_from(KINDS))
        count = draw(st.integers(1, 3)) if method.client_streaming else 1
        payloads = []
        for _ in range(count):
            if kind == "garbage":
                payloads.append(draw(garbage()))
                continue
            encoded = draw(by_request[method.request.full_name]).SerializeToString()
            payloads.append(draw(mutations(encoded)) if kind == "mutated" else encoded)
        return Case(role, method, kind, tuple(payloads))

    return cases()


@dataclass
class FuzzTarget:
    """The node under fuzz and a channel to it per role."""

    lab: Lab
    node: NodeProcess
    identities: dict[str, IdentityBundle]


def start_target(root: Path) -> FuzzTarget:
    """One node with a data root that holds a small dataset and a symlink to /etc."""
    lab = create_lab(root)
    data_root = root / "data"
    (data_root / "ds").mkdir(parents=True)
    (data_root / "ds" / "file.txt").write_text("fuzz\n")
    (data_root / "escape").symlink_to("/etc")
    jobs_root = root / "jobs"
    jobs_root.mkdir()
    for text in (str(data_root), str(data_root / "ds"), str(data_root / "escape"), str(jobs_root)):
        _KNOWN.add(text)
    node = lab.start_node(
        "node-1",
        data_dir=lab.first_data_dir,
        extra_args=["--simulate-gpus", "2xA100-80GB", "--data-root", str(data_root)],
        env={"MURMUR_NODE_JOB_PATH_ROOTS": str(jobs_root)},
    )
    identities = {
        "admin": IdentityBundle.read(lab.admin_identity),
        "member": lab.ca.issue(name="member", role=Role.MEMBER, validity_days=30),
        "viewer": lab.ca.issue(name="viewer", role=Role.VIEWER, validity_days=30),
        "node": lab.ca.issue(
            name="fuzz-node", role=Role.NODE, validity_days=30, node_addresses=["127.0.0.1"]
        ),
    }
    return FuzzTarget(lab, node, identities)


async def status_answer(channel: grpc.aio.Channel) -> Outcome:
    get_status = channel.unary_unary(
        "/murmur.v1.ClusterService/GetStatus",
        request_serializer=_identity,
        response_deserializer=_identity,
    )
    try:
        await get_status(cluster_pb2.GetStatusRequest().SerializeToString(), timeout=20)
    except grpc.aio.AioRpcError as exc:
        return Outcome(exc.code(), exc.details() or "")
    return Outcome(grpc.StatusCode.OK, "")


def fuzz(
    target: FuzzTarget,
    *,
    cases: int,
    seed: int = 0,
    methods: tuple[Method, ...] | None = None,
    max_seconds: float | None = None,
    progress: bool = False,
) -> Tally:
    """Sends ``cases`` cases to ``target`` (fewer once ``max_seconds`` have passed)."""
    methods = methods or contract_methods()
    tally = Tally()
    loop = asyncio.new_event_loop()
    started = time.monotonic()

    async def open_channels() -> dict[str, grpc.aio.Channel]:
        return {role: mtls_channel(target.node, b) for role, b in target.identities.items()}

    async def check_status(when: str) -> None:
        outcome = await status_answer(channels["admin"])
        if outcome.code is not grpc.StatusCode.OK:
            tally.status_failures.append(
                f"GetStatus {when}: {outcome.code.name} {outcome.details!r}"
            )

    channels = loop.run_until_complete(open_channels())
    try:

        @settings(
            max_examples=cases,
            phases=[Phase.generate],
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis_seed(seed)
        @given(case_strategy(methods))
        def one(case: Case) -> None:
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                return
            outcome = loop.run_until_complete(call(channels[case.role], case))
            tally.add(case, outcome)
            if tally.cases % STATUS_EVERY == 0:
                loop.run_until_complete(check_status(f"after {tally.cases} cases"))
                if progress:
                    print(
                        f"{tally.cases} cases, {len(tally.problems)} problems, "
                        f"{time.monotonic() - started:.0f} s",
                        file=sys.stderr,
                        flush=True,
                    )

        one()
        loop.run_until_complete(check_status("at the end"))
        if target.node.process.poll() is not None:
            tally.status_failures.append(f"the node exited with {target.node.process.returncode}")
    finally:
        for channel in channels.values():
            loop.run_until_complete(channel.close())
        loop.close()
    tally.seconds = time.monotonic() - started
    return tally


@contextlib.contextmanager
def running_target(root: Path) -> Iterator[FuzzTarget]:
    target = start_target(root)
    try:
        yield target
    finally:
        target.lab.stop_all()


def incidents(node: NodeProcess, tally: Tally) -> str:
    """The node's log of each crash's incident: where the handler failed."""
    wanted = {
        problem.outcome.details.rsplit("incident ", 1)[-1].rstrip(")")
        for problem in tally.problems
        if "incident " in problem.outcome.details
    }
    found = [
        f"incident {record['incident']}: {record.get('traceback', record)}"
        for record in node.log_records()
        if record.get("incident") in wanted
    ]
    return "\n".join(found) or "no incident in the node's log"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--method", action="append", default=[], help="only these (e.g. SubmitJob)")
    args = parser.parse_args(argv)
    # Stopped from outside: still run the cleanup that kills the node.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    methods = contract_methods()
    if args.method:
        methods = tuple(m for m in methods if m.path.rsplit("/", 1)[-1] in args.method)
    with (
        tempfile.TemporaryDirectory(prefix="murmur-fuzz-") as tmp,
        running_target(Path(tmp)) as target,
    ):
        tally = fuzz(target, cases=args.cases, seed=args.seed, methods=methods, progress=True)
        print(f"command: python -m tests.fuzz.rpc --cases {args.cases} --seed {args.seed}")
        print(tally.report())
        if not tally.passed:
            print("\n" + incidents(target.node, tally), file=sys.stderr)
            kept = Path(tempfile.gettempdir()) / f"murmur-fuzz-node-{os.getpid()}.log"
            shutil.copyfile(target.node.log_path, kept)
            print(f"the node's log: {kept}", file=sys.stderr)
    return 0 if tally.passed else 1


if __name__ == "__main__":
    sys.exit(main())
