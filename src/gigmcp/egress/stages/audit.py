"""The audit stage: one row per request, and one per connection refused before any
request (``audit.py`` queues and writes them; every row the proxy's TCP side writes goes
through here).

A flow's row is begun when its exchange begins (the clock starts then) and filled in at
each point: the credentials injected (by id), the bytes each way, the status, how it
ended. A refusal before the upstream is dialled is a row of its own, naming what the
request named; once dialled, the exchange's row says how it ended, with its duration.

Owns the audit fields of a flow and of a refused connection. It must never record a
query string, a header value or a credential value (the path is cut at '?', a credential
is named by its id), and never record one flow twice.
"""

from __future__ import annotations

import time

from gigmcp.egress.audit import EgressAudit, EgressEvent, audit_path
from gigmcp.egress.clients import Client
from gigmcp.egress.flow import Flow
from gigmcp.egress.http1 import Denied, target_host


class AuditStage:
    def __init__(self, audit: EgressAudit) -> None:
        self.audit = audit

    # -- connections, before any flow ----------------------------------------------------
    def on_unknown_source(self, source: str) -> None:
        self.audit.record(EgressEvent(source_ip=source, decision="denied", reason="unknown-source"))

    def on_connection(self, client: Client, decision: str, reason: str, **fields: object) -> None:
        """A connection refused (or failed) before any request was read."""
        self.audit.record(client.event(decision, reason, **fields))

    # -- a flow --------------------------------------------------------------------------
    def on_request(self, flow: Flow) -> None:
        assert flow.request is not None
        assert flow.host is not None
        flow.started = time.monotonic()
        flow.event = flow.client.event(
            "allowed", "allowed", method=flow.request.method.decode("ascii", "replace")[:16],
            scheme=flow.scheme, host=flow.host.name, port=flow.port, path=audit_path(flow.target),
        )  # fmt: skip

    def on_request_headers(self, flow: Flow) -> None:
        assert flow.event is not None
        flow.event.credential = ",".join(flow.injected)[:64] or None

    def on_request_body_chunk(self, flow: Flow, data: bytes) -> None:
        """Also the bytes relayed toward the upstream after a protocol switch."""
        assert flow.event is not None
        flow.event.bytes_out += len(data)

    def on_response_headers(self, flow: Flow, status: int) -> None:
        assert flow.event is not None
        flow.event.status = status

    def on_response_body_chunk(self, flow: Flow, data: bytes) -> None:
        """Also the bytes relayed from the upstream after a protocol switch."""
        assert flow.event is not None
        flow.event.bytes_in += len(data)

    def on_denied(self, flow: Flow, denied: Denied) -> None:
        if flow.upstream is None:
            # Nothing left for the upstream: a row of its own, naming what the request named.
            req = flow.request
            target = req.target.decode("ascii", "replace") if req is not None else ""
            event = flow.client.event(
                "denied", denied.reason,
                method=req.method.decode("ascii", "replace")[:16] if req is not None else None,
                scheme=flow.scheme,
                host=flow.host.name if flow.host else target_host(target), port=flow.port,
                path=audit_path(target) if target.startswith(("/", "http")) else None,
            )  # fmt: skip
            event.status = denied.status
            event.credential = denied.credential
            self.audit.record(event)
            flow.event = None
            return
        assert flow.event is not None
        event = flow.event
        event.decision, event.reason, event.status = "denied", denied.reason, denied.status
        event.credential = denied.credential or event.credential

    def on_cut_off(self, flow: Flow, reason: str) -> None:
        """The connection was cut off after the answer began (the status stands)."""
        assert flow.event is not None
        flow.event.decision, flow.event.reason = "denied", reason

    def on_aborted(self, flow: Flow) -> None:
        if flow.event is not None:
            flow.event.decision, flow.event.reason = "error", "aborted"

    def on_done(self, flow: Flow) -> None:
        """The exchange is over: its row, with its duration, is queued (once)."""
        event, flow.event = flow.event, None
        if event is not None:
            event.duration_ms = round((time.monotonic() - flow.started) * 1000, 3)
            self.audit.record(event)
