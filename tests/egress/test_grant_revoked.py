"""The egress proxy after an instance's grant is revoked or replaced, on connections the
sandbox opened before: nothing more leaves on them, and a request head the proxy had
already filled in with the key does not leave either.

A kept-alive tunnel outlives a change (a client library keeps its connections for
minutes): the proxy checks the grant again right before a request head goes upstream.
Revoking is what the gateway does when it retires an instance (app.py: the
provider forgets the grant, the proxy forgets what it compiled from it). The proxy runs
in-process inside the egress lab (tests/support/egress_lab.py); the sandbox end is a real TLS
client speaking HTTP/1.1 through a CONNECT tunnel, from the sandbox's address.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import h11
import pytest

from gigmcp.core.definitions import parse_credentials, parse_egress
from gigmcp.core.instances import InstanceKey
from gigmcp.core.placeholders import InstanceCredentials, Sealed
from gigmcp.core.views import ServerDef
from gigmcp.egress.audit import EgressAudit
from gigmcp.egress.certs import CertificateAuthority, LeafCache, upstream_context
from gigmcp.egress.listeners import ProxyPorts
from gigmcp.egress.proxy import EgressProxy
from gigmcp.netpolicy.resolver import DnsResolver
from gigmcp.sandbox.identity import Identity, SourceTable
from gigmcp.store.db import make_engine, migrate
from tests.support.egress_lab import PROXY_IP, SANDBOX_IP, Lab, lab

pytestmark = pytest.mark.root

KEY = InstanceKey(1, "api")
OLD, NEW = "sk_live_gigOLDKEY_00112233445566778899", "sk_live_gigNEWKEY_99887766554433221100"
PLACEHOLDER = "gigmcp_ph_" + "Q" * 30
PORTS = ProxyPorts.from_base(3228)
EGRESS = parse_egress({"hosts": ["api.example.test"]})
CREDS = parse_credentials(
    [
        {
            "id": "api_key",
            "type": "api_key",
            "inject": {"header": "Authorization", "format": "Bearer {token}"},
            "env": "API_KEY",
            "hosts": ["api.example.test"],
        }
    ],
    EGRESS,
)
SERVER = ServerDef(1, "api", 7, ("x",), egress=EGRESS, credentials=CREDS)


def grant(value: str) -> InstanceCredentials:
    return InstanceCredentials(KEY, 7, SERVER, (Sealed(CREDS[0], PLACEHOLDER, value.encode()),))


@dataclass
class World:
    lab: Lab
    proxy: EgressProxy
    grants: dict[InstanceKey, InstanceCredentials]
    client_tls: ssl.SSLContext

    def revoke(self, replacement: InstanceCredentials | None = None) -> None:
        """What retiring an instance does (and what a relaunch brings)."""
        self.grants.pop(KEY, None)
        self.proxy.forget(KEY)
        if replacement is not None:
            self.grants[KEY] = replacement


@pytest.fixture(scope="module")
def the_lab() -> Iterator[Lab]:
    with lab() as built:
        yield built


@pytest.fixture
async def world(the_lab: Lab, tmp_path: Path) -> AsyncIterator[World]:
    the_lab.reset()
    identities = SourceTable()
    identities.add(Identity(KEY, "api", 1, 7, PROXY_IP, SANDBOX_IP, "lo"))
    gateway_ca = CertificateAuthority.generate()
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    migrate(engine)
    audit = EgressAudit(engine)
    grants = {KEY: grant(OLD)}
    proxy = EgressProxy(
        identities=identities,
        grants=grants.get,
        resolver=DnsResolver(the_lab.dns),
        leaves=LeafCache(gateway_ca),
        upstream_tls=upstream_context(the_lab.ca_pem),
        audit=audit,
        ports=PORTS,
        bind="0.0.0.0",
    )
    await proxy.start()
    tls = ssl.create_default_context(cadata=gateway_ca.cert_pem().decode())
    try:
        yield World(the_lab, proxy, grants, tls)
    finally:
        await proxy.aclose()
        await audit.aclose()
        engine.dispose()


class Tunnel:
    """One CONNECT tunnel to api.example.test, kept alive across requests, as a client
    library's connection pool keeps it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, world: World) -> Tunnel:
        reader, writer = await asyncio.open_connection(
            PROXY_IP, PORTS.explicit, local_addr=(SANDBOX_IP, 0)
        )
        writer.write(b"CONNECT api.example.test:443 HTTP/1.1\r\nHost: api.example.test:443\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await writer.start_tls(world.client_tls, server_hostname="api.example.test")
        return cls(reader, writer)

    def head(self, path: str, length: int = 0) -> None:
        headers = [
            ("host", "api.example.test"),
            ("authorization", f"Bearer {PLACEHOLDER}"),
            ("content-length", str(length)),
        ]
        self.writer.write(self.h11.send(h11.Request(method="POST", target=path, headers=headers)))

    async def finish(self, body: bytes = b"") -> tuple[int, dict[bytes, bytes]]:
        """Send the body and end the request; the response's status and headers."""
        out = self.h11.send(h11.Data(data=body)) if body else b""
        self.writer.write(out + self.h11.send(h11.EndOfMessage()))
        await self.writer.drain()
        response = None
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await asyncio.wait_for(self.reader.read(65536), 10))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        assert response is not None
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        return response.status_code, dict(response.headers)

    async def request(self, path: str) -> tuple[int, dict[bytes, bytes]]:
        self.head(path)
        return await self.finish()

    def close(self) -> None:
        self.writer.close()


def keys_seen(the_lab: Lab) -> list[str | None]:
    return [h.headers.get("authorization") for h in the_lab.hits_on("11.0.0.1")]


async def test_attack_a_kept_alive_tunnel_carries_nothing_out_after_the_grant_is_revoked(
    world: World,
) -> None:
    tunnel = await Tunnel.open(world)
    try:
        assert (await tunnel.request("/v1/one"))[0] == 200
        assert keys_seen(world.lab) == [f"Bearer {OLD}"], "control"
        world.revoke()
        status, headers = await tunnel.request("/v1/two")
    finally:
        tunnel.close()
    assert status == 403 and headers[b"x-gigmcp-denied"] == b"grant-revoked"
    assert keys_seen(world.lab) == [f"Bearer {OLD}"]


async def test_attack_a_tunnel_from_before_a_key_was_replaced_never_sends_the_old_key(
    world: World,
) -> None:
    old = await Tunnel.open(world)
    try:
        assert (await old.request("/v1/one"))[0] == 200
        world.revoke(replacement=grant(NEW))
        assert (await old.request("/v1/two"))[0] == 403
        fresh = await Tunnel.open(world)
        try:
            assert (await fresh.request("/v1/three"))[0] == 200
        finally:
            fresh.close()
    finally:
        old.close()
    assert keys_seen(world.lab) == [f"Bearer {OLD}", f"Bearer {NEW}"]


async def test_attack_a_head_filled_in_before_the_revocation_does_not_leave_after_it(
    world: World,
) -> None:
    """The sandbox sends a request head and holds its body back: the proxy puts the key
    in the head, dials the API, then waits for the body. Revoked meanwhile, the head
    must not leave when the body comes."""
    tunnel = await Tunnel.open(world)
    try:
        tunnel.head("/v1/held", length=4)
        await tunnel.writer.drain()
        # The proxy dials only after it has decided and filled the head in.
        async with asyncio.timeout(10):
            while not world.lab.connections:  # noqa: ASYNC110 - the lab records accepts only
                await asyncio.sleep(0.01)
        world.revoke()
        status, headers = await tunnel.finish(b"body")
    finally:
        tunnel.close()
    assert status == 403 and headers[b"x-gigmcp-denied"] == b"grant-revoked"
    assert world.lab.hits_on("11.0.0.1") == []


def test_retiring_an_instance_drops_its_grant_in_the_gateway_serve_assembles(
    tmp_path: Path,
) -> None:
    """The wiring the tests above stand in for: in the gateway ``gigmcp serve`` builds,
    the supervisor's retire hooks drop the instance's grant from the credential provider
    and the proxy, so retiring revokes before the process is told to stop."""
    from gigmcp.app import Gateway, attach_egress, egress_parts
    from gigmcp.config import load_settings
    from gigmcp.sandbox.launcher import SandboxConfig, SandboxLauncher

    settings = load_settings({"GIG_DATA_DIR": str(tmp_path), "GIG_MASTER_KEY": "ab" * 32})
    parts = egress_parts(settings)
    launcher = SandboxLauncher(SandboxConfig(pool_size=0, ca_bundle=parts.ca.cert_pem()))
    gateway = Gateway(settings, launcher=launcher)
    try:
        attach_egress(gateway, settings, parts)
        provider, proxy = gateway.credentials, gateway.egress
        assert proxy is not None
        env = provider.environment_for(KEY, SERVER)
        assert env["API_KEY"].startswith("gigmcp_ph_") and proxy.grants(KEY) is not None
        assert gateway.supervisor.on_retire, "nothing is called when an instance retires"
        for hook in gateway.supervisor.on_retire:
            hook(KEY)
        assert proxy.grants(KEY) is None
    finally:
        gateway.catalog.engine.dispose()
        parts.engine.dispose()
