"""The egress proxy: every sandbox's only way out, embedded in the gateway's event loop.

Assembles the parts and gives the gateway their life cycle:

- ``listeners.py``: the three TCP listeners and the sandboxes' resolver (``dns.py``),
  reachable only from sandbox interfaces; each connection identified (``clients.py``)
  before anything is read from it, and bounded per instance;
- ``entrances.py``: the explicit proxy (CONNECT, absolute-form HTTP), transparent HTTP
  (Host header) and transparent TLS (server name), each deciding where a request goes
  (allowlist, then port) before any TLS work or dialling;
- ``exchange.py``: one HTTP/1.1 request and its answer through h11 (``http1.py``), a
  :class:`~gigmcp.egress.flow.Flow` passed through the injection, scrubbing and audit
  stages (``stages/``) at their points; dialling only vetted addresses with verified TLS
  (``upstream.py``, ``resolver.py``);
- per instance, the policy and keys compiled once per launch (``clients.py``), dropped
  with its idle upstream connections when it ends.

Keys travel toward their hosts only and only on legs with verified TLS, every answer is
scrubbed before it reaches a sandbox, every request is an audit row, and a denial is a
403 (or 400/421/502/504) with a short machine-readable reason.

Owns the wiring and the life cycle. It must never open a connection for an unknown
source, never dial before the decision, and never let a real credential value reach a
sandbox (each part's docstring says how it keeps to this).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from gigmcp.core.instances import InstanceKey
from gigmcp.core.placeholders import InstanceCredentials
from gigmcp.egress.audit import EgressAudit
from gigmcp.egress.certs import LeafCache
from gigmcp.egress.clients import Clients
from gigmcp.egress.dns import SandboxDns
from gigmcp.egress.entrances import Entrances
from gigmcp.egress.exchange import Exchange
from gigmcp.egress.listeners import Listeners, ProxyPorts
from gigmcp.egress.stages.audit import AuditStage
from gigmcp.egress.stages.inject import InjectStage
from gigmcp.egress.stages.scrub import ScrubStage
from gigmcp.egress.upstream import UpstreamPool
from gigmcp.netpolicy.policy import NO_EXTRA_PORTS, PortRules
from gigmcp.netpolicy.resolver import Resolver
from gigmcp.sandbox.identity import SourceTable


class EgressProxy:
    def __init__(
        self,
        *,
        identities: SourceTable,
        grants: Callable[[InstanceKey], InstanceCredentials | None],
        resolver: Resolver,
        leaves: LeafCache,
        upstream_tls: ssl.SSLContext,
        audit: EgressAudit,
        ports: ProxyPorts | None = None,
        bind: str = "0.0.0.0",  # noqa: S104 - only sandbox interfaces reach it (firewall)
        port_rules: PortRules = NO_EXTRA_PORTS,  # the operator's GIG_EGRESS_EXTRA_PORTS
    ) -> None:
        self.port_rules = port_rules
        self.identities = identities
        self.grants = grants
        self.leaves = leaves
        self.pool = UpstreamPool(resolver, upstream_tls)
        self.audit = audit
        self.ports = ports or ProxyPorts()
        self.bind = bind
        self.clients = Clients(identities, grants, port_rules)
        stage = AuditStage(audit)
        self.exchange = Exchange(
            pool=self.pool, clients=self.clients, inject=InjectStage(), scrub=ScrubStage(),
            audit=stage,
        )  # fmt: skip
        self.entrances = Entrances(exchange=self.exchange, audit=stage, leaves=leaves)
        self.listeners = Listeners(clients=self.clients, audit=stage, bind=bind, ports=self.ports)

    async def start(self) -> None:
        e = self.entrances
        await self.listeners.start(
            explicit=e.explicit, http=e.transparent_http, tls=e.transparent_tls
        )

    async def aclose(self) -> None:
        await self.listeners.aclose()
        await self.pool.aclose()

    @property
    def dns(self) -> SandboxDns | None:
        return self.listeners.dns

    def forget(self, key: InstanceKey) -> None:
        """An instance ended: drop its compiled keys and its idle upstream connections."""
        self.clients.forget(key)
        self.pool.drop_instance(f"{key.profile_id}/{key.server_name}")
