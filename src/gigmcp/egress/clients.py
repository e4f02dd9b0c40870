"""Who is on a proxy connection: the source address's instance, with that instance's
policy and keys, compiled once per launch.

Owns the per-instance compiled state (the grant it was built from, the
:class:`EgressPolicy`, the :class:`InstanceKeys` with their scrubber and detector), the
identification of a connection (source address → instance, arriving at that instance's
own host end), and the check that the grant a connection was opened under is still its
instance's. It must never identify a connection that arrives elsewhere than its
instance's own host end, never hand one instance another's keys, and never let a
connection opened under a revoked grant pass as current.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gigmcp.core.instances import InstanceKey
from gigmcp.core.placeholders import InstanceCredentials
from gigmcp.egress.audit import EgressEvent
from gigmcp.egress.inject import InstanceKeys
from gigmcp.netpolicy.policy import DEFAULT_PORTS, EgressPolicy, PortRules
from gigmcp.sandbox.identity import Identity, SourceTable

_Compiled = tuple[InstanceCredentials | None, EgressPolicy, InstanceKeys]


@dataclass(slots=True)
class Client:
    """A sandbox connection's instance, as compiled when the connection was accepted."""

    identity: Identity
    policy: EgressPolicy
    keys: InstanceKeys
    source_ip: str

    @property
    def instance(self) -> str:
        """The instance's name in audit rows and upstream pool keys."""
        return f"{self.identity.key.profile_id}/{self.identity.key.server_name}"

    def event(self, decision: str, reason: str, **kw: object) -> EgressEvent:
        """An audit event naming this instance."""
        i = self.identity
        return EgressEvent(
            source_ip=self.source_ip,
            decision=decision,
            reason=reason,
            owner_id=i.owner_id,
            profile_id=i.profile_id,
            server=i.server_name,
            instance=self.instance,
            **kw,  # type: ignore[arg-type]
        )


class Clients:
    def __init__(
        self,
        identities: SourceTable,
        grants: Callable[[InstanceKey], InstanceCredentials | None],
        port_rules: PortRules,
    ) -> None:
        self.identities = identities
        self.grants = grants
        self.port_rules = port_rules
        self._compiled: dict[InstanceKey, _Compiled] = {}

    def identify(self, source: str, local: str | None) -> Client | None:
        """The instance behind ``source`` when the connection arrived at ``local``, its
        own host end (an address is an identity only on its own link); None otherwise."""
        identity = self.identities.lookup(source)
        if identity is None or not local or local != identity.host_ip:
            return None
        compiled = self._compile(identity.key)
        return Client(identity, compiled[1], compiled[2], source)

    def policy(self, key: InstanceKey) -> EgressPolicy:
        return self._compile(key)[1]

    def granted(self, client: Client) -> bool:
        """Whether the grant this connection was opened under is still its instance's.
        A credential or egress change revokes it at once (the supervisor retires the
        instance), and a connection opened before must not carry another request out."""
        return self._compile(client.identity.key)[2] is client.keys

    def forget(self, key: InstanceKey) -> None:
        self._compiled.pop(key, None)

    def _compile(self, key: InstanceKey) -> _Compiled:
        grant = self.grants(key)
        compiled = self._compiled.get(key)
        if compiled is None or compiled[0] is not grant:
            # Built once per launch (a relaunch brings a new grant): the policy, and the
            # instance's keys with its scrubber and detector.
            server = grant.server if grant is not None else None
            hosts = server.egress.hosts if server is not None else ()
            ports = server.egress.ports if server is not None else DEFAULT_PORTS
            # Checked again on every connection: a grant written before the operator
            # withdrew a port from GIG_EGRESS_EXTRA_PORTS cannot open it.
            policy = EgressPolicy(hosts, ports, self.port_rules)
            compiled = (grant, policy, InstanceKeys(grant, hosts))
            self._compiled[key] = compiled
        return compiled
