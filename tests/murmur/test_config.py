"""Where the client finds its node and identity, and what it refuses before dialing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import murmur
from murmur._config import (
    DEFAULT_NODE_ADDRESS,
    checked_identities_path,
    client_settings_path,
    default_home,
    resolve_connect_config,
    validate_node_address,
)
from murmur.certs import NODE_TLS_NAME, CertificateAuthority, Role


@pytest.fixture(scope="module")
def lab_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("lab-ca") / "ca")


def write_identity(
    lab_ca: CertificateAuthority, path: Path, *, name: str = "alice", now: datetime | None = None
) -> Path:
    lab_ca.issue(name=name, role=Role.MEMBER, validity_days=30, now=now).write(path)
    return path


@pytest.fixture
def home(tmp_path: Path, lab_ca: CertificateAuthority) -> Path:
    """A Murmur home with the identity `murmur up` would have left there."""
    home = tmp_path / "home"
    write_identity(lab_ca, home / "identity.pem", name="home-user")
    return home


def write_settings(home: Path, text: str) -> None:
    client_settings_path(home).write_text(text, encoding="utf-8")


# ------------------------------------------------------------ node address precedence


def test_with_nothing_configured_the_default_node_is_used(home: Path) -> None:
    config = resolve_connect_config(env={}, home=home)

    assert config.address == DEFAULT_NODE_ADDRESS == "127.0.0.1:7070"


def test_the_settings_file_beats_the_default(home: Path) -> None:
    write_settings(home, 'node = "127.0.0.3:7071"\n')

    assert resolve_connect_config(env={}, home=home).address == "127.0.0.3:7071"


def test_the_environment_beats_the_settings_file(home: Path) -> None:
    write_settings(home, 'node = "127.0.0.3:7071"\n')

    config = resolve_connect_config(env={"MURMUR_NODE": "127.0.0.4:7072"}, home=home)

    assert config.address == "127.0.0.4:7072"


def test_the_argument_beats_the_environment(home: Path) -> None:
    write_settings(home, 'node = "127.0.0.3:7071"\n')

    config = resolve_connect_config(
        node="[::1]:7073", env={"MURMUR_NODE": "127.0.0.4:7072"}, home=home
    )

    assert config.address == "[::1]:7073"


def test_empty_values_count_as_unset(home: Path) -> None:
    write_settings(home, 'node = ""\n')

    config = resolve_connect_config(node="", env={"MURMUR_NODE": ""}, home=home)

    assert config.address == DEFAULT_NODE_ADDRESS


def test_a_settings_file_without_a_node_key_leaves_the_default(home: Path) -> None:
    write_settings(home, "# written by murmur up\n[other]\nkey = 1\n")

    assert resolve_connect_config(env={}, home=home).address == DEFAULT_NODE_ADDRESS


def test_a_settings_file_that_is_not_toml_is_a_config_error(home: Path) -> None:
    write_settings(home, "node = 127.0.0.1:7070\n")

    with pytest.raises(murmur.ConfigError, match=r"client\.toml are not valid TOML"):
        resolve_connect_config(env={}, home=home)


def test_a_node_that_is_not_a_string_is_a_config_error(home: Path) -> None:
    write_settings(home, "node = 7070\n")

    with pytest.raises(murmur.ConfigError, match="`node` must be a string"):
        resolve_connect_config(env={}, home=home)


def test_a_bad_address_names_where_it_came_from(home: Path) -> None:
    with pytest.raises(murmur.ConfigError, match=r"'gpu-01' \(from MURMUR_NODE\)"):
        resolve_connect_config(env={"MURMUR_NODE": "gpu-01"}, home=home)

    write_settings(home, 'node = "gpu-01:99999"\n')
    with pytest.raises(murmur.ConfigError, match=r"client\.toml\): port must be"):
        resolve_connect_config(env={}, home=home)


# ---------------------------------------------------------------- home and identity


def test_default_home_honours_murmur_home(tmp_path: Path) -> None:
    assert default_home({"MURMUR_HOME": str(tmp_path)}) == tmp_path
    assert default_home({}) == Path.home() / ".murmur"


def test_without_a_home_argument_murmur_home_is_read_from_env(home: Path) -> None:
    write_settings(home, 'node = "127.0.0.9:7070"\n')

    config = resolve_connect_config(env={"MURMUR_HOME": str(home)})

    assert config.address == "127.0.0.9:7070"
    assert config.tls.identity is not None
    assert config.tls.identity.name == "home-user"


def test_identity_precedence_is_argument_then_environment_then_home(
    home: Path, tmp_path: Path, lab_ca: CertificateAuthority
) -> None:
    from_env = write_identity(lab_ca, tmp_path / "env.pem", name="env-user")
    from_arg = write_identity(lab_ca, tmp_path / "arg.pem", name="arg-user")

    def identity_name(**kwargs: str) -> str:
        env = {"MURMUR_IDENTITY": str(from_env)} if kwargs.pop("with_env", "") else {}
        identity = resolve_connect_config(env=env, home=home, **kwargs).tls.identity
        assert identity is not None
        return identity.name

    assert identity_name() == "home-user"
    assert identity_name(with_env="yes") == "env-user"
    assert identity_name(with_env="yes", identity=str(from_arg)) == "arg-user"


def test_the_identity_bundle_becomes_the_tls_material(home: Path) -> None:
    tls = resolve_connect_config(env={}, home=home).tls

    assert tls.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert tls.certificate_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert tls.ca_certificate_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert tls.certificate_pem != tls.ca_certificate_pem
    assert tls.server_name == NODE_TLS_NAME == "node.murmur"


def test_a_missing_identity_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(murmur.ConfigError, match=r"no identity at .*identity\.pem"):
        resolve_connect_config(env={}, home=tmp_path)


def test_a_corrupt_identity_is_a_config_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n")

    with pytest.raises(murmur.ConfigError, match=r"broken\.pem"):
        murmur.TLSConfig.from_identity_file(broken)


def test_the_private_key_never_appears_in_a_repr(home: Path) -> None:
    config = resolve_connect_config(env={}, home=home)

    assert b"PRIVATE KEY".decode() not in repr(config)
    assert "home-user" in repr(config)


# ----------------------------------------------------------------- address validation


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:7070", "10.1.2.3:1", "gpu-01.lab.example:65535", "localhost:7070", "[::1]:7070"],
)
def test_valid_addresses_are_accepted(address: str) -> None:
    assert validate_node_address(f"  {address} ") == address


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "expected HOST:PORT"),
        (":7070", "expected HOST:PORT"),
        ("", "expected HOST:PORT"),
        ("https://gpu-01:7070", "without a scheme"),
        ("::1:7070", "put an IPv6 address in brackets"),
        ("[::1]", "expected [IPV6]:PORT"),
        ("[gpu-01]:7070", "is not an IPv6 address"),
        ("gpu_01:7070", "is not a host name or IP address"),
        ("999.0.0.1:7070", "is not an IPv4 address"),
        ("gpu-01:0", "port must be a number from 1 to 65535"),
        ("gpu-01:65536", "port must be a number from 1 to 65535"),
        ("gpu-01:http", "port must be a number from 1 to 65535"),
        ("gpu-01:-1", "port must be a number from 1 to 65535"),
    ],
)
def test_invalid_addresses_are_refused_with_the_reason(address: str, reason: str) -> None:
    with pytest.raises(murmur.ConfigError) as raised:
        validate_node_address(address)

    assert str(raised.value).startswith(f"invalid node address {address!r}: ")
    assert reason in str(raised.value)


ipv4_hosts = st.ip_addresses(v=4).map(str)
ipv6_hosts = st.ip_addresses(v=6).map(lambda address: f"[{address}]")


@given(host=ipv4_hosts | ipv6_hosts, port=st.integers(1, 65535))
def test_any_ip_address_with_a_valid_port_is_accepted(host: str, port: int) -> None:
    assert validate_node_address(f"{host}:{port}") == f"{host}:{port}"


@given(host=ipv4_hosts | ipv6_hosts, port=st.integers(65536, 10**6) | st.just(0))
def test_any_port_outside_1_to_65535_is_refused(host: str, port: int) -> None:
    with pytest.raises(murmur.ConfigError, match="port must be a number from 1 to 65535"):
        validate_node_address(f"{host}:{port}")


# -------------------------------------------------------------------- frozen settings


def test_connect_config_checks_its_fields(home: Path) -> None:
    tls = resolve_connect_config(env={}, home=home).tls

    with pytest.raises(murmur.ConfigError, match="invalid node address"):
        murmur.ConnectConfig(address="nowhere", tls=tls)
    with pytest.raises(murmur.ConfigError, match="timeout must be a positive"):
        murmur.ConnectConfig(address=DEFAULT_NODE_ADDRESS, tls=tls, timeout=0)
    with pytest.raises(murmur.ConfigError, match="keepalive_seconds"):
        murmur.ConnectConfig(address=DEFAULT_NODE_ADDRESS, tls=tls, keepalive_seconds=-1)
    with pytest.raises(murmur.ConfigError, match="max_attempts"):
        murmur.RetryConfig(max_attempts=0)
    with pytest.raises(murmur.ConfigError, match="initial_backoff <= max_backoff"):
        murmur.RetryConfig(initial_backoff=2.0, max_backoff=1.0)


def test_connect_config_stores_the_address_without_spaces(home: Path) -> None:
    tls = resolve_connect_config(env={}, home=home).tls

    assert murmur.ConnectConfig(address=" 10.0.0.1:7070\n", tls=tls).address == "10.0.0.1:7070"


def test_configs_are_frozen(home: Path) -> None:
    config = resolve_connect_config(env={}, home=home)

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.address = "10.0.0.1:7070"  # type: ignore[misc]


# ------------------------------------- identity contents recorded as checked (the CLI's)


def checked(home: Path, identity: Path) -> murmur.TLSConfig:
    config = resolve_connect_config(env={}, home=home, identity=identity, checked_identities=True)
    return config.tls


def test_a_recorded_identity_gives_the_same_tls_material_as_a_checked_one(
    lab_ca: CertificateAuthority, tmp_path: Path
) -> None:
    identity = write_identity(lab_ca, tmp_path / "alice.pem")
    home = tmp_path / "home"

    first = checked(home, identity)  # checked in full, then recorded
    recorded = checked(home, identity)  # taken from the record

    assert first == recorded == murmur.TLSConfig.from_identity_file(identity)
    assert checked_identities_path(home).stat().st_mode & 0o077 == 0
    assert b"PRIVATE KEY" not in checked_identities_path(home).read_bytes()


def test_a_tampered_identity_is_checked_again_whatever_was_recorded(
    lab_ca: CertificateAuthority, tmp_path: Path
) -> None:
    identity = write_identity(lab_ca, tmp_path / "alice.pem")
    home = tmp_path / "home"
    checked(home, identity)
    # Alice's key with Mallory's certificate, in the file that was recorded as fine.
    mallory = lab_ca.issue(name="mallory", role=Role.ADMIN, validity_days=30)
    alice = murmur.TLSConfig.from_identity_file(identity)
    identity.write_bytes(alice.key_pem + mallory.certificate_pem + mallory.ca_certificate_pem)

    with pytest.raises(murmur.ConfigError, match="private key does not match"):
        checked(home, identity)


def test_a_forged_record_does_not_change_what_is_presented_or_trusted(
    lab_ca: CertificateAuthority, tmp_path: Path
) -> None:
    identity = write_identity(lab_ca, tmp_path / "alice.pem")
    home = tmp_path / "home"
    checked(home, identity)
    path = checked_identities_path(home)
    path.write_text(path.read_text().replace('"member"', '"admin"').replace('"alice"', '"eve"'))

    tls = checked(home, identity)

    genuine = murmur.TLSConfig.from_identity_file(identity)
    assert (tls.key_pem, tls.certificate_pem, tls.ca_certificate_pem) == (
        genuine.key_pem,
        genuine.certificate_pem,
        genuine.ca_certificate_pem,
    )


@pytest.mark.parametrize("record", ["not json", '{"identities": []}', '{"identities": {"x": 1}}'])
def test_an_unreadable_record_means_checking_in_full(
    lab_ca: CertificateAuthority, tmp_path: Path, record: str
) -> None:
    identity = write_identity(lab_ca, tmp_path / "alice.pem")
    home = tmp_path / "home"
    home.mkdir()
    checked_identities_path(home).write_text(record)

    assert checked(home, identity) == murmur.TLSConfig.from_identity_file(identity)
    assert checked(home, identity) == murmur.TLSConfig.from_identity_file(identity)


def test_a_recorded_identity_past_its_dates_is_still_refused_before_connecting(
    lab_ca: CertificateAuthority, tmp_path: Path
) -> None:
    issued = datetime.now(UTC) - timedelta(days=60)
    identity = write_identity(lab_ca, tmp_path / "old.pem", now=issued)
    home = tmp_path / "home"
    checked(home, identity)

    tls = checked(home, identity)

    assert tls.identity is not None
    assert tls.identity.not_after < datetime.now(UTC)
    assert tls.identity == murmur.TLSConfig.from_identity_file(identity).identity


# --------------------------------------------- certificate dates, checked before dialing


@pytest.mark.parametrize(
    ("issued", "problem"),
    [(timedelta(days=-60), "expired"), (timedelta(days=60), "not valid before")],
)
async def test_a_certificate_outside_its_dates_is_refused_before_connecting(
    lab_ca: CertificateAuthority, tmp_path: Path, issued: timedelta, problem: str
) -> None:
    path = write_identity(lab_ca, tmp_path / "dated.pem", now=datetime.now(UTC) + issued)
    config = murmur.ConnectConfig(
        address=DEFAULT_NODE_ADDRESS, tls=murmur.TLSConfig.from_identity_file(path)
    )
    client = murmur.AsyncClient(config)

    with pytest.raises(murmur.ConfigError, match=f"cannot use your identity: .*{problem}"):
        await client.__aenter__()
    with pytest.raises(murmur.ConfigError, match=problem):
        await client.status()
    await client.close()
