# Murmur developer entry points. Everything runs from the project's .venv.
#   make up      create .venv, install, start a local demo cluster (Ctrl-C stops it)
#   make test    install what tests need, then lint, type-check and run the test suite
#   make bench   run the benchmarks in tests/bench (results: docs/benchmarks.md)
#   make chaos   randomized fault rounds against real 5-node clusters (CHAOS_ROUNDS, CHAOS_SEED)
#   make soak    mixed load + faults against a real cluster for a set time, checked throughout
#                (SOAK_MINUTES, SOAK_NODES, SOAK_SEED; SOAK_REPORT=FILE for the JSON report)
#   make fuzz    hostile requests to every RPC of a real node (FUZZ_CASES, FUZZ_SEED)
#   make proto   regenerate the gRPC stubs from proto/
#   make lint    ruff + mypy
#   make dist    the one self-contained program: dist/onedir/murmur/murmur, dist/onefile/murmur
#   make dist-check  make dist, then the offline chroot smoke test of it (root; scripts/dist-smoke.sh)
#   make dist-repro  make dist twice and check both builds are byte-identical

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROTOS := $(wildcard proto/murmur/v1/*.proto)

.PHONY: install up test test-deps lint proto bench chaos soak fuzz clean dist dist-check dist-repro

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/murmur up

# System tools the tests need: a Docker engine and busybox for the test image (root only).
test-deps:
	@./scripts/install-test-deps.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The pure tests two at a time (pytest-xdist: CPU-bound, twice as fast on two cores);
# then the tests that start real processes (marked exclusive by tests/conftest.py), two
# at a time, each test file on one worker: they mostly wait on daemons, so one at a
# time left the machine half idle; then, alone, those marked serial by hand: faults and
# load on purpose (chaos, soak, bursts), network namespaces, a real terminal. Then, as
# root, the frozen build and its offline chroot smoke test (dist-check).
test: install test-deps lint
	$(BIN)/pytest -q -n 2 -m "not exclusive"
	$(BIN)/pytest -q -n 2 --dist loadfile -m "exclusive and not serial"
	$(BIN)/pytest -q -m serial
	@if [ "$$(id -u)" -eq 0 ]; then $(MAKE) --no-print-directory dist-check; \
	else echo "make test: not root: skipping dist-check (the frozen build's chroot smoke test)"; fi

proto: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m grpc_tools.protoc -I proto \
		--python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. $(PROTOS)

bench: install test-deps
	$(BIN)/python -m tests.bench.run
	$(BIN)/python -m tests.bench.bench_jobs
	$(BIN)/python -m tests.bench.bench_scheduler
	$(BIN)/python -m tests.bench.bench_gossip_sim
	$(BIN)/python -m tests.bench.bench_tui
	$(BIN)/python -m tests.bench.bench_election_sim
	$(BIN)/python -m tests.bench.bench_membership --sizes 10,32
	$(BIN)/python -m tests.bench.bench_membership --sizes 50 --gossip probe_interval=2 --gossip probe_timeout=1.5
	$(BIN)/python -m tests.bench.bench_consensus
	$(BIN)/python -m tests.bench.bench_load
	$(BIN)/python -m tests.bench.bench_bursts
	$(BIN)/python -m tests.bench.bench_status_honesty --kills 100
	$(BIN)/python -m tests.bench.bench_idle --sizes 5,32 --window 40
	$(BIN)/python -m tests.bench.bench_silent_failures --sizes 5,32 --stops 15 --stall-minutes 3 --profiles murmur
	$(BIN)/python -m tests.bench.bench_retention
	$(BIN)/python -m tests.bench.bench_imports
	$(BIN)/python -m tests.bench.bench_trace_replay
	$(BIN)/python -m tests.bench.bench_router
	$(BIN)/python -m tests.bench.bench_audit --per-client 100 --rounds 2
	$(BIN)/python -m tests.bench.bench_scripting
	$(MAKE) --no-print-directory dist
	$(BIN)/python -m tests.bench.bench_dist

# Kill -9 (leader included), restarts and partitions against real clusters; exit 1 on any
# lost acknowledged job, job running twice at once, or orphan process. About 15 s a round.
CHAOS_ROUNDS ?= 100
CHAOS_SEED ?= 1
chaos: install test-deps
	$(BIN)/python -m tests.chaos.run --rounds $(CHAOS_ROUNDS) --seed $(CHAOS_SEED)

# Bursts from client processes, cancels, long and short jobs, kill -9 (leader included),
# stalls and partitions against a real cluster for SOAK_MINUTES; exit 1 on a stuck, lost or
# doubly run job, a dishonest status or a daemon whose RSS, files, threads or tasks grow.
SOAK_MINUTES ?= 60
SOAK_NODES ?= 3
SOAK_SEED ?= 1
SOAK_REPORT ?=
soak: install test-deps
	$(BIN)/python -m tests.soak.run --minutes $(SOAK_MINUTES) --nodes $(SOAK_NODES) \
		--seed $(SOAK_SEED) $(if $(SOAK_REPORT),--report $(SOAK_REPORT))

# Generated, mutated and garbage requests to every ClusterService and NodeService method
# of a real node, as admin, member, viewer and node; exit 1 on a handler crash (UNKNOWN,
# INTERNAL), a refusal without a message, or a node that stops answering GetStatus.
FUZZ_CASES ?= 10000
FUZZ_SEED ?= 1
fuzz: install
	$(BIN)/python -m tests.fuzz.rpc --cases $(FUZZ_CASES) --seed $(FUZZ_SEED)

DIST_STAMP := $(VENV)/.dist-installed-stamp

$(DIST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,dist]'
	touch $(DIST_STAMP)

# PyInstaller, offline from the package index; about 30 s here. Prints the glibc floor.
dist: $(DIST_STAMP)
	$(BIN)/python scripts/packaging/build.py

dist-repro: $(DIST_STAMP)
	$(BIN)/python scripts/packaging/build.py --twice

# The frozen build in a chroot with no Python and only loopback: --version, ca init, two
# nodes joined, a process job, status, top under tmux, then a bundle made, verified,
# tampered with and installed into a fresh root.
dist-check: dist
	./scripts/dist-smoke.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis dist build
