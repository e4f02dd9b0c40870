"""A real egress proxy for one test, inside the egress lab (tests/support/egress_lab.py).

``running_proxy`` starts the proxy in-process (in the lab's namespace, where the calling
thread already is) for one instance whose grant the test chooses: its egress hosts and
ports, and the operator's settings (extra ports, host addresses allowed). ``ProxyRun``
drives it with curl from the lab's sandbox address and reads its audit rows back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gigmcp.core.definitions import parse_credentials, parse_egress
from gigmcp.core.instances import InstanceKey
from gigmcp.core.placeholders import InstanceCredentials
from gigmcp.core.views import ServerDef
from gigmcp.egress.audit import EgressAudit
from gigmcp.egress.certs import CertificateAuthority, LeafCache, upstream_context
from gigmcp.egress.listeners import ProxyPorts
from gigmcp.egress.proxy import EgressProxy
from gigmcp.netpolicy.resolver import DnsResolver
from gigmcp.sandbox.identity import Identity, SourceTable
from gigmcp.store.db import make_engine, migrate
from gigmcp.store.models import EgressAuditRow
from tests.support.egress_lab import PROXY_IP, SANDBOX_IP, Lab

KEY = InstanceKey(1, "api")
PORTS = ProxyPorts.from_base(3128)


@dataclass
class ProxyRun:
    lab: Lab
    proxy: EgressProxy
    gateway_ca: Path
    db: Path

    async def curl(self, *args: str) -> tuple[int, str, str]:
        """curl through the explicit proxy from the sandbox's address; (status, body,
        stderr). An http:// URL gets the proxy's own answer (a refusal's JSON)."""
        return await proxy_curl(self.gateway_ca, SANDBOX_IP, *args)

    async def audit_rows(self) -> list[EgressAuditRow]:
        await self.proxy.audit.flush()
        engine = make_engine(f"sqlite:///{self.db}")
        try:
            with Session(engine) as s:
                return list(s.scalars(select(EgressAuditRow).order_by(EgressAuditRow.id)))
        finally:
            engine.dispose()


@contextlib.asynccontextmanager
async def running_proxy(
    the_lab: Lab,
    tmp_path: Path,
    hosts: Sequence[str],
    ports: Sequence[int] | None = None,
    **operator: Any,
) -> AsyncIterator[ProxyRun]:
    """The proxy, for one instance allowed ``hosts`` on ``ports`` (the grant as stored:
    not re-checked against the operator's settings, as a row written earlier would be).
    ``operator``: ``allow_host_addresses`` (for the resolver) and ``extra_ports`` (for the
    proxy), passed only when given, so the default is what an operator who set nothing
    gets."""
    the_lab.reset()
    raw: dict[str, Any] = {"hosts": list(hosts)}
    if ports is not None:
        raw["ports"] = list(ports)
    egress = parse_egress(raw)
    server = ServerDef(
        1, "api", 7, ("x",), egress=egress, credentials=parse_credentials([], egress)
    )
    grants = {KEY: InstanceCredentials(KEY, 7, server, ())}
    identities = SourceTable()
    identities.add(Identity(KEY, "api", 1, 7, PROXY_IP, SANDBOX_IP, "lo"))
    gateway_ca = CertificateAuthority.generate()
    ca_file = tmp_path / "gateway-ca.pem"
    ca_file.write_bytes(gateway_ca.cert_pem())
    db = tmp_path / "audit.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    audit = EgressAudit(engine)
    resolver_kw: dict[str, Any] = {}
    proxy_kw: dict[str, Any] = {}
    if "allow_host_addresses" in operator:
        from gigmcp.netpolicy.hostaddr import HostAddresses

        resolver_kw["host_addresses"] = HostAddresses(operator["allow_host_addresses"])
    if "extra_ports" in operator:
        from gigmcp.netpolicy.policy import PortRules

        proxy_kw["port_rules"] = PortRules(operator["extra_ports"])
    proxy = EgressProxy(
        identities=identities,
        grants=grants.get,
        resolver=DnsResolver(the_lab.dns, **resolver_kw),
        leaves=LeafCache(gateway_ca),
        upstream_tls=upstream_context(the_lab.ca_pem),
        audit=audit,
        ports=PORTS,
        bind="0.0.0.0",
        **proxy_kw,
    )
    await proxy.start()
    try:
        yield ProxyRun(the_lab, proxy, ca_file, db)
    finally:
        await proxy.aclose()
        await audit.aclose()
        engine.dispose()


async def proxy_curl(gateway_ca: Path, source: str, *args: str) -> tuple[int, str, str]:
    """curl through the explicit proxy from ``source``; (HTTP status, body, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        "curl", "-sS", "--max-time", "10", "--interface", source,
        "--proxy", f"http://{PROXY_IP}:{PORTS.explicit}", "--cacert", str(gateway_ca),
        "-w", "\n%{http_code}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    body, _, code = out.decode().rpartition("\n")
    return int(code or 0), body, err.decode()
