"""The router beyond loopback speaks HTTPS with the node's certificate from the lab CA:
a client that trusts only the lab CA gets its answers (an OpenAI client pointed at
``https://node:port/v1`` with the CA bundle), one that does not trust it is refused
in the handshake, no client certificate is asked, and a renewed certificate is served
from the next connection on. Plain HTTP is refused beyond loopback, in the config."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from murmur.certs import CertificateAuthority, IdentityBundle, Role
from murmur.node.api.tls import ServerCertificates
from murmur.node.config import ConfigError, HostPort, NodeConfig, load_node_config
from murmur.node.router.proxy import ModelRouter, RouterServer
from murmur.node.router.routes import RoutingTable
from murmur.node.router.tls import RouterTls, covers
from murmur.v1 import types_pb2
from tests.support.chat_replica import chat_replica
from tests.support.nodes import free_port

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


def node_bundle(ca: CertificateAuthority, *addresses: str) -> IdentityBundle:
    return ca.issue(name="gpu-01", role=Role.NODE, validity_days=30, node_addresses=addresses)


@contextlib.asynccontextmanager
async def replica() -> AsyncIterator[int]:
    """A replica on loopback answering chat completions."""

    async def chat(request: web.Request) -> web.Response:
        return web.json_response({"object": "chat.completion", "model": "m"})

    async with chat_replica(chat) as port:
        yield port


@contextlib.asynccontextmanager
async def https_router(
    certificates: ServerCertificates, replica_port: int, host: str = "127.0.0.1"
) -> AsyncIterator[int]:
    info = types_pb2.NodeInfo(name="n1", address="127.0.0.1:1", state=types_pb2.NODE_STATE_ALIVE)
    info.endpoints.add(service="s", job_id="j1", port=replica_port, ready=True, models=["m"])
    table = RoutingTable([info], "n1")
    port = free_port()
    server = RouterServer(
        ModelRouter(lambda: table), host, port, tls=RouterTls(certificates, handshake_seconds=2)
    )
    await server.start()
    try:
        yield port
    finally:
        await server.close()


@pytest.fixture
def lab_ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path / "ca")


def trusting(ca_file: Path) -> ssl.SSLContext:
    """What an OpenAI client given ``SSL_CERT_FILE`` (or httpx's ``verify=``) trusts:
    the lab CA alone, the system's roots not at all."""
    return ssl.create_default_context(cafile=str(ca_file))


async def test_a_client_trusting_the_lab_ca_is_answered_and_one_that_does_not_is_refused(
    lab_ca: CertificateAuthority, tmp_path: Path
) -> None:
    certificates = ServerCertificates(node_bundle(lab_ca, "127.0.0.1"))
    ca_file = tmp_path / "ca" / "ca.crt"
    CertificateAuthority.create(tmp_path / "other")
    async with replica() as replica_port, https_router(certificates, replica_port) as port:
        base = f"https://127.0.0.1:{port}/v1"
        async with aiohttp.ClientSession() as http:
            # No client certificate: the lab CA's bundle is all a client needs.
            async with http.post(
                f"{base}/chat/completions", json=CHAT, ssl=trusting(ca_file)
            ) as answer:
                assert answer.status == 200
                assert (await answer.json())["model"] == "m"
            async with http.get(
                f"https://localhost:{port}/v1/models", ssl=trusting(ca_file)
            ) as answer:
                assert (await answer.json())["data"][0]["id"] == "m"
            # The system's roots, or another lab's CA: the handshake fails.
            for context in (ssl.create_default_context(), trusting(tmp_path / "other" / "ca.crt")):
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    await http.post(f"{base}/chat/completions", json=CHAT, ssl=context)
            # Plain HTTP to the HTTPS port gets no answer of the router's.
            with pytest.raises(aiohttp.ClientError):
                async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT):
                    pass


async def test_a_renewed_certificate_is_served_from_the_next_connection(
    lab_ca: CertificateAuthority, tmp_path: Path
) -> None:
    first = node_bundle(lab_ca, "127.0.0.1")
    certificates = ServerCertificates(first)
    context = trusting(tmp_path / "ca" / "ca.crt")

    async def served_serial(port: int) -> str:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        await writer.wait_closed()
        return format(x509.load_der_x509_certificate(der).serial_number, "x")

    async with replica() as replica_port, https_router(certificates, replica_port) as port:
        assert await served_serial(port) == first.identity.serial
        renewed = node_bundle(lab_ca, "127.0.0.1")
        certificates.update(renewed)  # what node/trust.py does when renewal.py renewed it
        assert await served_serial(port) == renewed.identity.serial
        assert await served_serial(port) == renewed.identity.serial
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"https://127.0.0.1:{port}/v1/chat/completions", json=CHAT, ssl=context
            ) as answer,
        ):
            assert answer.status == 200


async def test_an_address_the_certificate_does_not_name_is_reported(
    lab_ca: CertificateAuthority, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = node_bundle(lab_ca, "127.0.0.1")
    for named in ("127.0.0.1", "localhost", "0.0.0.0", "::"):  # clients dial its address
        assert covers(bundle, named)
    for other in ("127.0.0.2", "gpu-01.lab"):
        assert not covers(bundle, other)
    with caplog.at_level(logging.WARNING, logger="murmur.router"):
        async with (
            replica() as replica_port,
            https_router(ServerCertificates(bundle), replica_port, host="127.0.0.2"),
        ):
            pass
    assert any("does not name" in record.getMessage() for record in caplog.records)


def test_plain_http_is_for_loopback_only() -> None:
    beyond = HostPort("0.0.0.0", 8000)
    assert NodeConfig(router_listen=beyond).router_https
    assert not NodeConfig(router_listen=HostPort("127.0.0.1", 8000)).router_https
    assert NodeConfig(router_listen=HostPort("127.0.0.1", 8000), router_tls=True).router_https
    with pytest.raises(ConfigError, match=r"not a loopback address.*in the clear"):
        NodeConfig(router_listen=beyond, router_tls=False)
    with pytest.raises(ConfigError, match="not a loopback address"):
        load_node_config(
            env={"MURMUR_NODE_ROUTER_LISTEN": "10.0.0.5:8000", "MURMUR_NODE_ROUTER_TLS": "false"}
        )
    config = load_node_config(env={"MURMUR_NODE_ROUTER_LISTEN": "10.0.0.5:8000"})
    assert config.router_https
