"""The egress audit trail, observed: each row the proxy records (a jail's requests and
refused connections, the sandboxes' resolver's refusals, remote servers' requests) is
also counted for the metrics and, with tracing on, made a span under the call that
caused it (``telemetry/probes.py``).

Owns only that tap on :meth:`EgressAudit.record`; the trail itself is ``audit.py``'s. It
must never change a row, and never add a trace header to a request toward an upstream:
the proxy sends third-party hosts no ``traceparent`` (it would tell every API a server
calls which of its requests belong together, and when the gateway's users made them).
"""

from __future__ import annotations

from gigmcp.egress.audit import EgressAudit, EgressEvent
from gigmcp.telemetry import probes


class ObservedAudit(EgressAudit):
    def record(self, event: EgressEvent) -> None:
        super().record(event)
        probes.egress(event)
