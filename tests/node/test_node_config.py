"""Node configuration: defaults < TOML file < environment < flags, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from murmur.node.config import ConfigError, HostPort, NodeConfig, load_node_config


def test_defaults_work_for_a_single_server(tmp_path: Path) -> None:
    config = load_node_config(env={}, flags={"data_dir": str(tmp_path)})
    assert config.listen == HostPort("127.0.0.1", 7070)
    assert config.effective_join_listen == HostPort("127.0.0.1", 7071)
    assert config.store_path == tmp_path / "murmur.db"
    assert config.effective_data_roots == (tmp_path / "datasets",)


def test_later_sources_win_field_by_field(tmp_path: Path) -> None:
    file = tmp_path / "node.toml"
    file.write_text(
        '[node]\nname = "from-file"\nlisten = "10.0.0.1:9000"\nlog_level = "warning"\n'
        'labels = { rack = "a" }\n'
    )
    config = load_node_config(
        config_file=file,
        env={"MURMUR_NODE_LISTEN": "10.0.0.2:9001", "MURMUR_NODE_LOG_LEVEL": "debug", "HOME": "/x"},
        flags={"log_level": "error", "name": None},
    )
    assert config.name == "from-file"  # only the file set it; a None flag is "not given"
    assert config.listen == HostPort("10.0.0.2", 9001)  # env beats file
    assert config.log_level == "error"  # flag beats env
    assert config.labels == {"rack": "a"}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"flags": {"listen": "nowhere"}}, "must look like HOST:PORT"),
        ({"flags": {"listen": "1.2.3.4:70000"}}, "out of range"),
        ({"flags": {"name": "Bad Name"}}, "node name 'Bad Name' is invalid"),
        ({"flags": {"log_level": "loud"}}, "log_level must be"),
        ({"flags": {"join": "1.2.3.4:7070"}}, "--join and --token go together"),
        ({"env": {"MURMUR_NODE_LISTN": "x"}}, "MURMUR_NODE_LISTN is not a node setting"),
        ({"flags": {"labels": ["novalue"]}}, "must look like KEY=VALUE"),
        ({"flags": {"shutdown_grace_seconds": "-1"}}, "must be positive"),
        ({"env": {"MURMUR_NODE_JOB_ACCOUNTS": "alice"}}, "must look like NAME=ACCOUNT"),
        ({"flags": {"job_accounts": {"alice": ""}}}, "needs a name and an account"),
        ({"env": {"MURMUR_NODE_ALLOW_ROOT_JOBS": "sure"}}, "must be true or false"),
    ],
)
def test_bad_values_name_the_field_and_the_source(kwargs: dict[str, object], fragment: str) -> None:
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError, match=fragment):
        load_node_config(**kwargs)  # type: ignore[arg-type]


def test_a_bad_file_is_reported_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        load_node_config(config_file=missing, env={})
    wrong_type = tmp_path / "typed.toml"
    wrong_type.write_text("telemetry_interval_seconds = true\n")
    with pytest.raises(ConfigError, match="must be a number"):
        load_node_config(config_file=wrong_type, env={})


@given(
    host=st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(str),
        st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
    ),
    port=st.integers(1, 65535),
)
def test_host_port_round_trips(host: str, port: int) -> None:
    address = HostPort(host, port)
    assert HostPort.parse(str(address), what="x") == address


def test_advertise_overrides_what_peers_dial() -> None:
    config = NodeConfig(listen=HostPort("0.0.0.0", 7070), advertise=HostPort("10.1.2.3", 7070))
    assert config.advertise_address == HostPort("10.1.2.3", 7070)
    assert config.advertise_join_address == HostPort("10.1.2.3", 7071)


def test_settings_outside_the_node_table_are_refused(tmp_path: Path) -> None:
    file = tmp_path / "mixed.toml"
    file.write_text('listen = "127.0.0.1:1"\n[node]\nname = "n"\n')
    with pytest.raises(ConfigError, match="outside \\[node\\]"):
        load_node_config(config_file=file, env={})


def test_gossip_timings_come_from_the_gossip_table_then_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "node.toml"
    file.write_text(
        '[node]\nname = "n1"\nseeds = ["10.0.0.5:7070"]\n\n'
        "[gossip]\nprobe_interval = 2.0\nprobe_timeout = 0.8\neager_push = false\n"
    )
    config = load_node_config(
        config_file=file,
        env={"MURMUR_GOSSIP_PROBE_TIMEOUT": "0.9", "MURMUR_GOSSIP_INDIRECT_CHECKS": "5"},
    )
    assert config.gossip.probe_interval == 2.0
    assert config.gossip.probe_timeout == 0.9
    assert config.gossip.indirect_checks == 5
    assert config.gossip.eager_push is False
    assert config.seeds == (HostPort("10.0.0.5", 7070),)
    # What is not set keeps the daemon's defaults: memberlist's LAN profile, sized for gRPC.
    assert config.gossip.suspicion_mult == 4
    assert config.gossip.max_piggyback_bytes == 64 * 1024


def test_seeds_from_the_environment_and_flags() -> None:
    env = {"MURMUR_NODE_SEEDS": "127.0.0.2:7070,127.0.0.3:7070"}
    assert [str(s) for s in load_node_config(env=env).seeds] == ["127.0.0.2:7070", "127.0.0.3:7070"]
    flagged = load_node_config(env=env, flags={"seeds": ["10.1.1.1:7070"]})
    assert flagged.seeds == (HostPort("10.1.1.1", 7070),)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MURMUR_GOSSIP_PROBE_INTERVAL": "soon"}, "probe_interval .* must be a number"),
        ({"MURMUR_GOSSIP_INDIRECT_CHECKS": "2.5"}, "indirect_checks .* must be an integer"),
        ({"MURMUR_GOSSIP_EAGER_PUSH": "maybe"}, "eager_push .* must be true or false"),
        ({"MURMUR_GOSSIP_PROBE_TIMOUT": "1"}, "unknown gossip setting 'probe_timout'"),
        ({"MURMUR_GOSSIP_PROBE_TIMEOUT": "3"}, "probe_timeout must be shorter than probe_interval"),
        ({"MURMUR_NODE_SEEDS": "nowhere"}, "seeds .* must look like HOST:PORT"),
        ({"MURMUR_NODE_LOAD_GOSSIP_INTERVAL_SECONDS": "0"}, "must be positive"),
    ],
)
def test_bad_gossip_settings_are_refused_with_the_field_named(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_node_config(env=env)


def test_a_gossip_table_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "node.toml"
    file.write_text('gossip = "fast"\n')
    with pytest.raises(ConfigError, match=r"\[gossip\] must be a table"):
        load_node_config(config_file=file, env={})


def test_jobs_run_as_their_owner_unless_the_admin_says_otherwise(tmp_path: Path) -> None:
    default = load_node_config(env={}, flags={"data_dir": str(tmp_path)})
    assert (default.job_accounts, default.job_fallback_account, default.allow_root_jobs) == (
        {},
        None,
        False,
    )
    assert default.scratch_dir == tmp_path / "work"

    file = tmp_path / "node.toml"
    file.write_text(
        '[node]\njob_fallback_account = "murmur-jobs"\n'
        '[node.job_accounts]\nalice = "asmith"\n"bob.k" = "bkim"\n'
    )
    from_file = load_node_config(config_file=file, env={})
    assert from_file.job_accounts == {"alice": "asmith", "bob.k": "bkim"}
    assert from_file.job_fallback_account == "murmur-jobs"

    overridden = load_node_config(
        config_file=file,
        env={"MURMUR_NODE_JOB_FALLBACK_ACCOUNT": "", "MURMUR_NODE_ALLOW_ROOT_JOBS": "yes"},
        flags={"job_accounts": {"carol": "cw"}},
    )
    # An empty fallback turns the file's off; the flag's table replaces the file's.
    assert overridden.job_fallback_account is None
    assert overridden.allow_root_jobs is True
    assert overridden.job_accounts == {"carol": "cw"}


def test_default_job_requests_from_a_file_and_the_environment(tmp_path: Path) -> None:
    assert (NodeConfig().default_job_cpus, NodeConfig().default_job_memory_bytes) == (1.0, 2**31)
    file = tmp_path / "node.toml"
    file.write_text('[node]\ndefault_job_cpus = 0.5\ndefault_job_memory_bytes = "512MiB"\n')
    config = load_node_config(config_file=file, env={})
    assert (config.default_job_cpus, config.default_job_memory_bytes) == (0.5, 512 * 2**20)
    config = load_node_config(
        config_file=file,
        env={"MURMUR_NODE_DEFAULT_JOB_CPUS": "0", "MURMUR_NODE_DEFAULT_JOB_MEMORY_BYTES": "4G"},
    )
    assert (config.default_job_cpus, config.default_job_memory_bytes) == (0.0, 4 * 10**9)
    bytes_only = load_node_config(env={"MURMUR_NODE_DEFAULT_JOB_MEMORY_BYTES": "1048576"})
    assert bytes_only.default_job_memory_bytes == 2**20


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"MURMUR_NODE_DEFAULT_JOB_CPUS": "-1"}, "default_job_cpus must be between 0 and 4096"),
        ({"MURMUR_NODE_DEFAULT_JOB_CPUS": "nan"}, "default_job_cpus must be between 0 and 4096"),
        ({"MURMUR_NODE_DEFAULT_JOB_MEMORY_BYTES": "2 lots"}, "bytes or a size such as 2GiB"),
        ({"MURMUR_NODE_DEFAULT_JOB_MEMORY_BYTES": "-5"}, "bytes or a size such as 2GiB"),
        ({"MURMUR_NODE_DEFAULT_JOB_MEMORY_BYTES": "2PiB"}, "bytes or a size such as 2GiB"),
        ({"MURMUR_NODE_DEFAULT_JOB_MEMORY_BYTES": "4096TiB"}, "between 0 and 1 PiB"),
    ],
)
def test_bad_default_job_requests_are_refused(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_node_config(env=env)


def test_a_router_table_sets_the_router_and_a_setting_given_twice_is_refused(
    tmp_path: Path,
) -> None:
    file = tmp_path / "node.toml"
    file.write_text(
        '[node]\nname = "n1"\n\n[router]\nlisten = "10.0.0.1:8000"\nrequire_keys = true\n'
    )
    config = load_node_config(config_file=file, env={}, flags={"data_dir": str(tmp_path)})
    assert config.router_listen == HostPort("10.0.0.1", 8000)
    assert config.router_require_keys
    assert config.router_https  # beyond loopback: HTTPS with the node's certificate
    # Flags and the environment still win over the file, as for every setting.
    local = load_node_config(
        config_file=file, env={"MURMUR_NODE_ROUTER_LISTEN": "127.0.0.1:8001"},
        flags={"data_dir": str(tmp_path)},
    )  # fmt: skip
    assert local.router_listen == HostPort("127.0.0.1", 8001)
    twice = tmp_path / "twice.toml"
    twice.write_text('[node]\nrouter_listen = "127.0.0.1:8000"\n\n[router]\nlisten = "x:1"\n')
    with pytest.raises(ConfigError, match="set twice"):
        load_node_config(config_file=twice, env={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[router]\nlistn = "127.0.0.1:8000"\n')
    with pytest.raises(ConfigError, match="router_listn"):
        load_node_config(config_file=unknown, env={})


def test_the_simulated_protocol_level_is_a_labelled_testing_knob(tmp_path: Path) -> None:
    from murmur.node.control.queue.protocol import PROTOCOL_LEVEL
    from murmur.node.daemon import speaks
    from murmur.node.errors import StartupError
    from murmur.node.local_node import VERSION

    plain = load_node_config(env={}, flags={"data_dir": str(tmp_path)})
    assert plain.simulate_protocol_level is None
    assert speaks(plain) == (PROTOCOL_LEVEL, VERSION)
    older = load_node_config(
        env={"MURMUR_NODE_SIMULATE_PROTOCOL_LEVEL": "1"}, flags={"data_dir": str(tmp_path)}
    )
    assert speaks(older) == (1, f"{VERSION}+simulated-protocol-1")
    with pytest.raises(ConfigError, match="1 or more"):
        load_node_config(env={"MURMUR_NODE_SIMULATE_PROTOCOL_LEVEL": "0"})
    with pytest.raises(ConfigError, match="simulate_protocol_level"):
        load_node_config(env={"MURMUR_NODE_SIMULATE_PROTOCOL_LEVEL": "1.5"})
    newer = load_node_config(
        env={"MURMUR_NODE_SIMULATE_PROTOCOL_LEVEL": str(PROTOCOL_LEVEL + 1)},
        flags={"data_dir": str(tmp_path)},
    )
    with pytest.raises(StartupError, match="only an older version can be simulated"):
        speaks(newer)
